package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"
)

// No secret given in the environment shows in any command's --help: flags
// that may carry one have no default of their own, and the SASL password
// has no flag at all.
func TestHelpShowsNoSecrets(t *testing.T) {
	secrets := map[string]string{
		"DATABASE_URL":                "postgres://payflow:db-secret-1@db/payflow",
		"PAYFLOW_KAFKA_SASL_PASSWORD": "kafka-secret-2",
		"PAYFLOW_PG_API_KEY":          "pg-secret-3",
		"PAYFLOW_PG_WEBHOOK_SECRET":   "whsec_secret4",
		"PAYFLOW_VAULT_KEY":           "vault-secret-5",
		"PAYFLOW_API_TOKEN":           "token-secret-6",
	}
	for k, v := range secrets {
		t.Setenv(k, v)
	}
	cmds := map[string]*cobra.Command{"serve": serveCmd(), "migrate": migrateCmd(), "pgsim": pgsimCmd(),
		"check": checkCmd(), "rotate-vault-key": rotateVaultKeyCmd()}
	for _, c := range dlqCmd().Commands() {
		cmds["dlq "+c.Name()] = c
	}
	for name, cmd := range cmds {
		var out bytes.Buffer
		cmd.SetOut(&out)
		cmd.SetErr(&out)
		if err := cmd.Help(); err != nil {
			t.Fatal(err)
		}
		for env, secret := range secrets {
			if strings.Contains(out.String(), secret) {
				t.Errorf("%s --help shows %s:\n%s", name, env, out.String())
			}
		}
	}
}

// serve and dlq replay take the Kafka security settings from the
// environment and flags, and refuse a mistake in them as a usage error
// before connecting to anything.
func TestKafkaSecurityMistakesAreUsageErrors(t *testing.T) {
	cases := []struct {
		name string
		env  map[string]string
		args []string
		want string
	}{
		{"unknown mechanism", map[string]string{"PAYFLOW_KAFKA_SASL_MECHANISM": "GSSAPI", "PAYFLOW_KAFKA_SASL_USERNAME": "u", "PAYFLOW_KAFKA_SASL_PASSWORD": "p"}, nil, "unknown PAYFLOW_KAFKA_SASL_MECHANISM"},
		{"mechanism by flag, no password", nil, []string{"--kafka-sasl-mechanism", "SCRAM-SHA-512", "--kafka-sasl-username", "u"}, "needs PAYFLOW_KAFKA_SASL_PASSWORD"},
		{"CA file missing", map[string]string{"PAYFLOW_KAFKA_TLS": "on", "PAYFLOW_KAFKA_TLS_CA": "/nonexistent/ca.pem"}, nil, "PAYFLOW_KAFKA_TLS_CA: open /nonexistent/ca.pem"},
		{"CA by flag without TLS", nil, []string{"--kafka-tls-ca", "/nonexistent/ca.pem"}, "TLS is off"},
		{"TLS switch not understood", map[string]string{"PAYFLOW_KAFKA_TLS": "maybe"}, nil, `PAYFLOW_KAFKA_TLS="maybe"`},
		{"results into the request topic", map[string]string{"PAYFLOW_TOPIC_EVENTS": "payment.requests"}, nil, "each topic needs its own name"},
		{"topic name Kafka refuses", nil, []string{"--topic-dlq", "dead letters"}, "PAYFLOW_TOPIC_DLQ"},
	}
	for _, tc := range cases {
		for _, which := range []string{"serve", "dlq replay"} {
			t.Run(tc.name+"/"+which, func(t *testing.T) {
				for _, v := range []string{"PAYFLOW_KAFKA_TLS", "PAYFLOW_KAFKA_TLS_CA", "PAYFLOW_KAFKA_TLS_CERT", "PAYFLOW_KAFKA_TLS_KEY",
					"PAYFLOW_KAFKA_TLS_SERVER_NAME", "PAYFLOW_KAFKA_SASL_MECHANISM", "PAYFLOW_KAFKA_SASL_USERNAME", "PAYFLOW_KAFKA_SASL_PASSWORD", "PAYFLOW_MERCHANT_TOKENS",
					"PAYFLOW_TOPIC_REQUESTS", "PAYFLOW_TOPIC_EVENTS", "PAYFLOW_TOPIC_DLQ"} {
					t.Setenv(v, "")
				}
				for k, v := range tc.env {
					t.Setenv(k, v)
				}
				var cmd *cobra.Command
				args := []string{"--brokers", "127.0.0.1:1"}
				if which == "serve" {
					cmd = serveCmd()
					args = append(args, "--database-url", "postgres://127.0.0.1:1/none", "--pg-url", "http://127.0.0.1:1")
				} else {
					cmd = dlqCmd()
					args = append([]string{"replay"}, args...)
				}
				cmd.SilenceUsage, cmd.SilenceErrors = true, true
				cmd.SetArgs(append(args, tc.args...))
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				err := cmd.ExecuteContext(ctx)
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("err = %v, want %q", err, tc.want)
				}
				if code := exitCode(err); code != 2 {
					t.Fatalf("exit code %d, want 2: %v", code, err)
				}
			})
		}
	}
}
