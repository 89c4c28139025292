package main

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/payflow/payflow/internal/testdb"
	"github.com/payflow/payflow/producer"
	"github.com/payflow/payflow/stdwebhook"
	"github.com/payflow/payflow/vault"
)

// The restricted deployment end to end through the command line: a
// migration job applies the schema, then serve starts against a broker
// that requires TLS and SASL, on topics and a group named by environment
// and flags, creating no topic and migrating nothing.
func TestMigrateJobThenServeOnASecuredBrokerWithoutCreatingOrMigrating(t *testing.T) {
	k, ca, d, topics := securedBroker(t, "PLAIN", "payflow", "plain-pass")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	dsn := testdb.NewDSN(t)
	for k, v := range map[string]string{
		"DATABASE_URL": dsn, "PAYFLOW_KAFKA_BROKERS": k.Addr(),
		"PAYFLOW_KAFKA_TLS": "on", "PAYFLOW_KAFKA_TLS_CA": ca,
		"PAYFLOW_KAFKA_SASL_MECHANISM": "PLAIN", "PAYFLOW_KAFKA_SASL_USERNAME": "payflow", "PAYFLOW_KAFKA_SASL_PASSWORD": "plain-pass",
		"PAYFLOW_TOPIC_REQUESTS": topics.Requests, "PAYFLOW_TOPIC_EVENTS": topics.Events, "PAYFLOW_TOPIC_DLQ": topics.DLQ,
		"PAYFLOW_PG_WEBHOOK_SECRET": stdwebhook.NewSecret(), "PAYFLOW_VAULT_KEY": vault.GenerateKey(), "PAYFLOW_MERCHANT_TOKENS": "",
	} {
		t.Setenv(k, v)
	}

	mig := migrateCmd()
	var out bytes.Buffer
	mig.SetOut(&out)
	mig.SetArgs(nil)
	if err := mig.ExecuteContext(ctx); err != nil || !strings.Contains(out.String(), "schema is up to date") {
		t.Fatalf("migrate: %v %s", err, out.String())
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	httpAddr := ln.Addr().String()
	ln.Close()
	serve := serveCmd()
	serve.SilenceUsage, serve.SilenceErrors = true, true
	serve.SetArgs([]string{"--pg-url", "http://127.0.0.1:1", "--http-addr", httpAddr, "--group-id", "shop-payflow",
		"--create-topics=false", "--migrate=false", "--log-format", "text"})
	sctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- serve.ExecuteContext(sctx) }()
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get("http://" + httpAddr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		select {
		case err := <-done:
			t.Fatalf("serve stopped: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("serve not ready after a minute")
		}
		time.Sleep(100 * time.Millisecond)
	}
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	for _, topic := range []string{"payment.requests", "payment.events", "payment.requests.dlq"} {
		if err := producer.CheckTopics(ctx, []string{k.Addr()}, []string{topic}, producer.WithSecurity(d)); err == nil {
			t.Fatalf("%s was created", topic)
		}
	}
}
