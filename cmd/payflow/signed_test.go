package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/payflow/payflow/stdwebhook"
)

// A malformed PAYFLOW_MERCHANT_KEYS stops serve before it connects to
// anything, as a usage error naming the variable and never the key.
func TestServeRefusesMalformedMerchantKeys(t *testing.T) {
	good := stdwebhook.NewSecret()
	t.Setenv("PAYFLOW_MERCHANT_TOKENS", "")
	t.Setenv("PAYFLOW_MERCHANT_KEYS", "m1:"+good+",m2:whsec_tooshort")
	cmd := serveCmd()
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	cmd.SetArgs([]string{"--brokers", "127.0.0.1:1", "--database-url", "postgres://127.0.0.1:1/none", "--pg-url", "http://127.0.0.1:1"})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := cmd.ExecuteContext(ctx)
	if err == nil {
		t.Fatal("serve started")
	}
	if code := exitCode(err); code != 2 {
		t.Fatalf("exit code %d, want 2: %v", code, err)
	}
	msg := err.Error()
	if !strings.Contains(msg, "PAYFLOW_MERCHANT_KEYS") || !strings.Contains(msg, "entry 2") {
		t.Fatalf("err = %v", err)
	}
	if strings.Contains(msg, strings.TrimPrefix(good, "whsec_")) || strings.Contains(msg, "tooshort") {
		t.Fatalf("the error quotes a key: %v", err)
	}
}

// The keys come from the environment only: no flag shows them in --help.
func TestMerchantKeysNeverPrinted(t *testing.T) {
	key := stdwebhook.NewSecret()
	t.Setenv("PAYFLOW_MERCHANT_KEYS", "m1:"+key)
	for _, cmd := range []interface {
		SetOut(io.Writer)
		SetArgs([]string)
		Execute() error
	}{serveCmd(), devCmd()} {
		var out bytes.Buffer
		cmd.SetOut(&out)
		cmd.SetArgs([]string{"--help"})
		if err := cmd.Execute(); err != nil {
			t.Fatal(err)
		}
		if strings.Contains(out.String(), strings.TrimPrefix(key, "whsec_")) {
			t.Fatalf("--help prints the key:\n%s", out.String())
		}
	}
}

func TestDevRefusesMalformedMerchantKeys(t *testing.T) {
	t.Setenv("PAYFLOW_MERCHANT_KEYS", "m1")
	_, err := startDev(context.Background(), devFlags{}, slog.New(slog.NewTextHandler(io.Discard, nil)), io.Discard)
	if err == nil || !strings.Contains(err.Error(), "PAYFLOW_MERCHANT_KEYS") {
		t.Fatalf("err = %v", err)
	}
}
