package consumer_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/payflow/payflow/consumer"
	"github.com/payflow/payflow/devenv"
	"github.com/payflow/payflow/kafkaconf"
	"github.com/payflow/payflow/outbox"
	"github.com/payflow/payflow/producer"
)

// securedBroker starts a broker that requires what sec configures: SASL
// with sec's mechanism and user, TLS with a certificate of a throwaway CA
// (and a client certificate when sec has one). It returns the broker's
// address and sec completed with the CA's files.
func securedBroker(t *testing.T, sec kafkaconf.Security) (string, kafkaconf.Security) {
	t.Helper()
	var opts []kfake.Opt
	if sec.SASLMechanism != "" {
		opts = append(opts, kfake.EnableSASL(), kfake.Superuser(sec.SASLMechanism, sec.SASLUsername, sec.SASLPassword))
	}
	if sec.TLS {
		files, err := devenv.WriteTLSFiles(t.TempDir(), "127.0.0.1")
		if err != nil {
			t.Fatal(err)
		}
		mutual := sec.TLSCert != ""
		sec.TLSCA = files.CA
		if mutual {
			sec.TLSCert, sec.TLSKey = files.ClientCert, files.ClientKey
		}
		opts = append(opts, kfake.TLS(files.Server(mutual)))
	}
	k, err := devenv.StartKafka("", opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(k.Close)
	return k.Addr(), sec
}

func dial(t *testing.T, sec kafkaconf.Security) *kafkaconf.Dial {
	t.Helper()
	d, err := sec.Dial()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Close)
	return d
}

// A message published through payflow's writer is consumed through
// payflow's consumer, and a dead letter written, on a broker that requires
// TLS, SASL or both; topic creation and the readiness ping go through the
// same security.
func TestSecuredBrokerEndToEnd(t *testing.T) {
	cases := []struct {
		name string
		sec  kafkaconf.Security
	}{
		{"SASL PLAIN over TLS", kafkaconf.Security{TLS: true, SASLMechanism: "PLAIN", SASLUsername: "payflow", SASLPassword: "plain-pass"}},
		{"SASL SCRAM-SHA-256", kafkaconf.Security{SASLMechanism: "SCRAM-SHA-256", SASLUsername: "payflow", SASLPassword: "scram-256-pass"}},
		{"SASL SCRAM-SHA-512 over mutual TLS", kafkaconf.Security{TLS: true, TLSCert: "client", SASLMechanism: "SCRAM-SHA-512", SASLUsername: "payflow", SASLPassword: "scram-512-pass"}},
		{"mutual TLS alone", kafkaconf.Security{TLS: true, TLSCert: "client"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			addr, sec := securedBroker(t, tc.sec)
			d := dial(t, sec)
			brokers := []string{addr}
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			sp := producer.WithSecurity(d)
			if err := producer.EnsureTopics(ctx, brokers, append(producer.Topics(1), producer.Topic{Name: "in", Partitions: 1}), sp); err != nil {
				t.Fatal(err)
			}
			if err := producer.Ping(ctx, brokers, sp); err != nil {
				t.Fatal(err)
			}
			w := producer.NewWriter(brokers, sp)
			defer w.Close()
			if err := w.Publish(ctx, []outbox.Message{
				{EventID: "e1", Topic: "in", Key: []byte("charge-1"), Value: []byte("hello")},
				{EventID: "e2", Topic: "in", Key: []byte("charge-2"), Value: []byte("poison")},
			}); err != nil {
				t.Fatal(err)
			}

			got := make(chan string, 2)
			dead := make(chan error, 1)
			c := consumer.New(consumer.Config{
				Brokers: brokers, Dialer: d.Dialer(), GroupID: "g", Topic: "in",
				Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
				Handler: func(_ context.Context, m kafka.Message) error {
					got <- string(m.Value)
					if string(m.Value) == "poison" {
						return consumer.DeadLetter(errors.New("not a request"))
					}
					return nil
				},
				DLQ:      w,
				Observer: deadLetters(func(cause error) { dead <- cause }),
			})
			runCtx, stop := context.WithCancel(ctx)
			done := make(chan error, 1)
			go func() { done <- c.Run(runCtx) }()
			seen := map[string]bool{}
			for len(seen) < 2 {
				select {
				case v := <-got:
					seen[v] = true
				case err := <-done:
					t.Fatalf("consumer stopped: %v", err)
				case <-ctx.Done():
					t.Fatalf("consumed only %v", seen)
				}
			}
			select {
			case <-dead:
			case <-ctx.Done():
				t.Fatal("no dead letter written")
			}
			stop()
			if err := <-done; err != nil {
				t.Fatal(err)
			}
		})
	}
}

// Wrong credentials, or a client that does not trust the broker's
// certificate, fail every part at once with an error that names the broker
// and says what was refused.
func TestSecuredBrokerRefusesWrongCredentials(t *testing.T) {
	cases := []struct {
		name     string
		broker   kafkaconf.Security
		wrong    func(kafkaconf.Security) kafkaconf.Security
		saysWhat string
	}{
		{"wrong PLAIN password",
			kafkaconf.Security{TLS: true, SASLMechanism: "PLAIN", SASLUsername: "payflow", SASLPassword: "right"},
			func(s kafkaconf.Security) kafkaconf.Security { s.SASLPassword = "not-the-password"; return s },
			"SASL authentication failed"},
		{"unknown SCRAM-SHA-512 user",
			kafkaconf.Security{SASLMechanism: "SCRAM-SHA-512", SASLUsername: "payflow", SASLPassword: "right"},
			func(s kafkaconf.Security) kafkaconf.Security { s.SASLUsername = "nobody"; return s },
			"SASL authentication failed"},
		{"untrusted broker certificate",
			kafkaconf.Security{TLS: true, SASLMechanism: "SCRAM-SHA-256", SASLUsername: "payflow", SASLPassword: "right"},
			func(s kafkaconf.Security) kafkaconf.Security { s.TLSCA = ""; return s },
			"TLS handshake failed"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			addr, good := securedBroker(t, tc.broker)
			d := dial(t, tc.wrong(good))
			brokers := []string{addr}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			sp := producer.WithSecurity(d)
			check := func(what string, err error) {
				t.Helper()
				if err == nil {
					t.Fatalf("%s: no error", what)
				}
				msg := err.Error()
				if !strings.Contains(msg, addr) || !strings.Contains(msg, tc.saysWhat) || !errors.Is(err, kafkaconf.ErrRefused) {
					t.Fatalf("%s: %v; want it to name %s and say %q", what, err, addr, tc.saysWhat)
				}
				if strings.Contains(msg, "not-the-password") || strings.Contains(msg, "right") {
					t.Fatalf("%s: a password in the error: %v", what, err)
				}
			}
			check("create topics", producer.EnsureTopics(ctx, brokers, producer.Topics(1), sp))
			check("ping", producer.Ping(ctx, brokers, sp))
			w := producer.NewWriter(brokers, sp)
			defer w.Close()
			check("publish", w.Publish(ctx, []outbox.Message{{EventID: "e", Topic: "payment.events", Key: []byte("k"), Value: []byte("v")}}))

			c := consumer.New(consumer.Config{
				Brokers: brokers, Dialer: d.Dialer(), GroupID: "g", Topic: "payment.requests",
				Logger:  slog.New(slog.NewTextHandler(io.Discard, nil)),
				Handler: func(context.Context, kafka.Message) error { return nil }, DLQ: w,
			})
			start := time.Now()
			check("consume", c.Run(ctx))
			if took := time.Since(start); took > 10*time.Second {
				t.Fatalf("the consumer took %s to give up", took)
			}
		})
	}
}
