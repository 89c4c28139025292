package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
)

// A PaySSam configuration that cannot work stops serve with exit code 2
// before it connects to anything, naming what is wrong and never the key.
func TestServeValidatesThePaySSamConfiguration(t *testing.T) {
	const key = "ps_secret_key_never_shown"
	full := map[string]string{
		"PAYFLOW_PG_PROVIDER": "payssam", "PAYFLOW_PAYSSAM_URL": "https://sandbox.paymint.co.kr/partner",
		"PAYFLOW_PAYSSAM_API_KEY": key, "PAYFLOW_PAYSSAM_MEMBER": "member1",
		"PAYFLOW_PAYSSAM_MERCHANTS": "m1:STORE1", "PAYFLOW_PAYSSAM_CALLBACK_URL": "https://payflow.example/webhooks/pg/payssam",
		"PAYFLOW_PAYSSAM_ALLOW_FROM": "", "PAYFLOW_MERCHANT_TOKENS": "", "PAYFLOW_PG_URL": "",
	}
	cases := []struct {
		name, env, val, want string
	}{
		{"unknown provider", "PAYFLOW_PG_PROVIDER", "tosspay", "--pg-provider"},
		{"no URL", "PAYFLOW_PAYSSAM_URL", "", "PAYFLOW_PAYSSAM_URL"},
		{"no API key", "PAYFLOW_PAYSSAM_API_KEY", "", "PAYFLOW_PAYSSAM_API_KEY"},
		{"no member", "PAYFLOW_PAYSSAM_MEMBER", "", "PAYFLOW_PAYSSAM_MEMBER"},
		{"no merchants", "PAYFLOW_PAYSSAM_MERCHANTS", "", "PAYFLOW_PAYSSAM_MERCHANTS"},
		{"bad merchants", "PAYFLOW_PAYSSAM_MERCHANTS", "m1", "PAYFLOW_PAYSSAM_MERCHANTS"},
		{"no callback URL", "PAYFLOW_PAYSSAM_CALLBACK_URL", "", "PAYFLOW_PAYSSAM_CALLBACK_URL"},
		{"relative callback URL", "PAYFLOW_PAYSSAM_CALLBACK_URL", "/webhooks/pg/payssam", "CallbackURL"},
		{"URL not http", "PAYFLOW_PAYSSAM_URL", "ftp://x", "URL"},
		{"bad allow-list", "PAYFLOW_PAYSSAM_ALLOW_FROM", "10.0.0.0/8,nope", "PAYFLOW_PAYSSAM_ALLOW_FROM"},
		{"API key too long", "PAYFLOW_PAYSSAM_API_KEY", strings.Repeat("k", 33) + key, "APIKey"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range full {
				t.Setenv(k, v)
			}
			t.Setenv(tc.env, tc.val)
			cmd := serveCmd()
			cmd.SilenceUsage, cmd.SilenceErrors = true, true
			// Unreachable brokers and database: a check that passes would
			// try them and fail with exit code 1.
			cmd.SetArgs([]string{"--brokers", "127.0.0.1:1", "--database-url", "postgres://127.0.0.1:1/none", "--db-connect-timeout", "1s"})
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			err := cmd.ExecuteContext(ctx)
			if err == nil || exitCode(err) != 2 {
				t.Fatalf("exit code %d: %v", exitCode(err), err)
			}
			if !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), key) {
				t.Fatalf("message %q: want it to name %s and not the key", err, tc.want)
			}
		})
	}
}

// The API key has no flag, so neither --help nor the process list shows it.
func TestServeHelpShowsNoPaySSamKey(t *testing.T) {
	t.Setenv("PAYFLOW_PAYSSAM_API_KEY", "ps_secret_key_never_shown")
	cmd := serveCmd()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetArgs([]string{"--help"})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"--pg-provider", "--payssam-url", "--payssam-merchants", "--payssam-callback-url", "--payssam-allow-from"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("--help lacks %s", want)
		}
	}
	if strings.Contains(out.String(), "ps_secret_key_never_shown") {
		t.Fatal("--help shows the PaySSam API key")
	}
}
