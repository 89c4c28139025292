package app_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/payflow/payflow/app"
	"github.com/payflow/payflow/devenv"
	"github.com/payflow/payflow/internal/testdb"
	"github.com/payflow/payflow/kafkaconf"
	"github.com/payflow/payflow/outbox"
	"github.com/payflow/payflow/producer"
	"github.com/payflow/payflow/vault"
)

// acceptingPG accepts every bill at once.
func acceptingPG() *stuckPG {
	pg := newStuckPG()
	close(pg.release)
	return pg
}

// securedKafka starts a broker that requires TLS and SASL SCRAM-SHA-256,
// and returns its address with the settings that reach it.
func securedKafka(t *testing.T) (string, kafkaconf.Security) {
	t.Helper()
	files, err := devenv.WriteTLSFiles(t.TempDir(), "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	k, err := devenv.StartKafka("", kfake.EnableSASL(), kfake.Superuser("SCRAM-SHA-256", "payflow", "scram-pass"), kfake.TLS(files.Server(false)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(k.Close)
	return k.Addr(), kafkaconf.Security{TLS: true, TLSCA: files.CA, SASLMechanism: kafkaconf.SCRAMSHA256, SASLUsername: "payflow", SASLPassword: "scram-pass"}
}

// readEvent reads topic (one partition) until an event of type typ.
func readEvent(t *testing.T, addr string, d *kafkaconf.Dial, topic, typ string) kafka.Message {
	t.Helper()
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: []string{addr}, Dialer: d.Dialer(), Topic: topic, Partition: 0, MaxWait: 50 * time.Millisecond})
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		m, err := r.ReadMessage(ctx)
		if err != nil {
			t.Fatalf("reading %s for %s: %v", topic, typ, err)
		}
		var ev struct{ Type string }
		if json.Unmarshal(m.Value, &ev) == nil && ev.Type == typ {
			return m
		}
	}
}

// payflow runs against a broker that requires TLS and SASL: it creates its
// topics, consumes a request, publishes the result and reports ready, all
// through the configured security.
func TestRunAgainstSecuredKafka(t *testing.T) {
	addr, sec := securedKafka(t)
	p := startOn(t, addr, acceptingPG(), func(c *app.Config) { c.KafkaSecurity = sec })
	d, err := sec.Dial()
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	w := producer.NewWriter([]string{addr}, producer.WithSecurity(d))
	defer w.Close()
	req := charge("c-1", "010-1234-5678")
	if err := w.Publish(context.Background(), []outbox.Message{{EventID: "ev-c-1", Topic: "payment.requests", Key: req.Key, Value: req.Value}}); err != nil {
		t.Fatal(err)
	}
	m := readEvent(t, addr, d, "payment.events", "payment.charge.processed")
	if string(m.Key) != "c-1" {
		t.Fatalf("result keyed %q", m.Key)
	}
	if code, body := p.readyz(t); code != http.StatusOK {
		t.Fatalf("/readyz = %d %s", code, body)
	}
	if out := p.logs.String(); strings.Contains(out, "scram-pass") || !strings.Contains(out, "sasl SCRAM-SHA-256 user=payflow") {
		t.Fatalf("the log shows the password, or not the security in use:\n%s", out)
	}
}

// Wrong credentials stop payflow at start with an error that names the
// broker and says what was refused.
func TestRunRefusesWrongKafkaCredentials(t *testing.T) {
	addr, sec := securedKafka(t)
	sec.SASLPassword = "not-the-password"
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	err := app.Run(ctx, app.Config{
		Brokers: []string{addr}, KafkaSecurity: sec, DatabaseURL: testdb.NewDSN(t), PG: acceptingPG(),
		VaultKey: vault.GenerateKey(), Roles: app.Roles{Worker: true}, RetryBudget: time.Minute, Lease: 2 * time.Minute,
	})
	if err == nil || !errors.Is(err, kafkaconf.ErrRefused) || !strings.Contains(err.Error(), addr) || !strings.Contains(err.Error(), "SASL authentication failed") {
		t.Fatalf("err = %v", err)
	}
}
