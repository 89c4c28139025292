package main

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/payflow/payflow/devenv"
	"github.com/payflow/payflow/kafkaconf"
	"github.com/payflow/payflow/producer"
)

// securedBroker starts an embedded broker that requires TLS and SASL
// (mechanism, user, pass), with the three topics renamed and created. It
// returns the broker, its CA file, a dialer with those settings and the
// topics.
func securedBroker(t *testing.T, mechanism, user, pass string) (*devenv.Kafka, string, *kafkaconf.Dial, kafkaconf.Topics) {
	t.Helper()
	files, err := devenv.WriteTLSFiles(t.TempDir(), "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	k, err := devenv.StartKafka("", kfake.EnableSASL(), kfake.Superuser(mechanism, user, pass), kfake.TLS(files.Server(false)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(k.Close)
	sec := kafkaconf.Security{TLS: true, TLSCA: files.CA, SASLMechanism: mechanism, SASLUsername: user, SASLPassword: pass}
	d, err := sec.Dial()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Close)
	topics := kafkaconf.Topics{Requests: "shop.pay.in", Events: "shop.pay.out", DLQ: "shop.pay.dlq"}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if err := producer.EnsureTopics(ctx, []string{k.Addr()}, producer.TopicsNamed(topics, 1), producer.WithSecurity(d)); err != nil {
		t.Fatal(err)
	}
	return k, files.CA, d, topics
}
