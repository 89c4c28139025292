package main

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/payflow/payflow/internal/testdb"
	"github.com/payflow/payflow/store"
)

// check reads the result topic with the Kafka settings serve takes (TLS,
// SASL, topic names from the environment and flags): against a broker that
// requires TLS and SCRAM, on renamed topics, it finds an event the database
// does not hold; with a wrong password it says the broker refused it; a
// mistaken setting is a usage error before anything connects.
func TestCheckReadsASecuredBrokerWithServesSettings(t *testing.T) {
	k, ca, d, topics := securedBroker(t, "SCRAM-SHA-256", "checker", "scram-pass")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	w := &kafka.Writer{Addr: kafka.TCP(k.Addr()), Transport: d.NewTransport(), Topic: topics.Events, RequiredAcks: kafka.RequireAll}
	defer w.Close()
	if err := w.WriteMessages(ctx, kafka.Message{Key: []byte("c-foreign"),
		Value: []byte(`{"specversion":"1.0","id":"ev-foreign","type":"payment.charge.processed","data":{"merchant_id":"m","charge_id":"c-foreign"}}`)}); err != nil {
		t.Fatal(err)
	}

	dsn := testdb.NewDSN(t)
	if err := store.Migrate(ctx, dsn); err != nil {
		t.Fatal(err)
	}
	ledger := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/sim/ledger" {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write([]byte("[]"))
	}))
	defer ledger.Close()

	for k, v := range map[string]string{
		"DATABASE_URL": dsn, "PAYFLOW_KAFKA_BROKERS": k.Addr(), "PAYFLOW_PG_URL": ledger.URL,
		"PAYFLOW_KAFKA_TLS": "on", "PAYFLOW_KAFKA_TLS_CA": ca,
		"PAYFLOW_KAFKA_SASL_MECHANISM": "SCRAM-SHA-256", "PAYFLOW_KAFKA_SASL_USERNAME": "checker", "PAYFLOW_KAFKA_SASL_PASSWORD": "scram-pass",
		"PAYFLOW_TOPIC_REQUESTS": topics.Requests,
	} {
		t.Setenv(k, v)
	}
	check := func(args ...string) (string, error) {
		cmd := checkCmd()
		cmd.SilenceUsage, cmd.SilenceErrors = true, true
		var out bytes.Buffer
		cmd.SetOut(&out)
		cmd.SetArgs(args)
		err := cmd.ExecuteContext(ctx)
		return out.String(), err
	}

	// The events topic from a flag, the requests topic from the
	// environment; both are read.
	out, err := check("--topic-events", topics.Events, "--requests")
	if err == nil || !strings.Contains(out, "1 events published") || !strings.Contains(out, "ev-foreign") ||
		!strings.Contains(out, "the database does not hold it") {
		t.Fatalf("check on the secured broker: %v\n%s", err, out)
	}
	if exitCode(err) != 1 {
		t.Fatalf("violations: exit %d, want 1: %v", exitCode(err), err)
	}

	// The same without the flag reads payment.events, which does not
	// exist here: proof that the flag named the topic read above.
	if out, err := check(); err == nil {
		t.Fatalf("check read a payment.events that does not exist:\n%s", out)
	}

	t.Setenv("PAYFLOW_KAFKA_SASL_PASSWORD", "not-the-password")
	_, err = check("--topic-events", topics.Events)
	if err == nil || !strings.Contains(err.Error(), "SASL authentication failed") || !strings.Contains(err.Error(), k.Addr()) ||
		strings.Contains(err.Error(), "not-the-password") {
		t.Fatalf("wrong password: %v", err)
	}
	t.Setenv("PAYFLOW_KAFKA_SASL_PASSWORD", "scram-pass")

	_, err = check("--topic-events", topics.Events, "--kafka-tls=false")
	if exitCode(err) != 2 || !strings.Contains(err.Error(), "PAYFLOW_KAFKA_TLS_CA") {
		t.Fatalf("a CA with TLS off: exit %d, want 2 naming the setting: %v", exitCode(err), err)
	}
}
