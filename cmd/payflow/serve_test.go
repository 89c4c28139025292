package main

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/payflow/payflow/stdwebhook"
	"github.com/payflow/payflow/vault"
)

// One step of a drive is a lookup plus a call, each bounded by the PG
// timeout, and the step may start just before the retry budget ends: a
// lease no longer than that lets a second worker in while the first still
// talks to the PG.
func TestLeaseRule(t *testing.T) {
	ms := time.Millisecond
	cases := []struct {
		name                     string
		lease, budget, pgTimeout time.Duration
		ok                       bool
	}{
		{"serve defaults", 2 * time.Minute, 30 * time.Second, 10 * time.Second, true},
		{"equal", 50 * time.Second, 30 * time.Second, 10 * time.Second, false},
		{"one ms longer", 50*time.Second + ms, 30 * time.Second, 10 * time.Second, true},
		{"one ms shorter", 50*time.Second - ms, 30 * time.Second, 10 * time.Second, false},
		{"budget plus one timeout only", 41 * time.Second, 30 * time.Second, 10 * time.Second, false},
		{"short values, equal", 4 * time.Second, 2 * time.Second, time.Second, false},
		{"short values, longer", 5 * time.Second, 2 * time.Second, time.Second, true},
		{"lease shorter than the budget", 10 * time.Second, 30 * time.Second, time.Second, false},
		{"no lease", 0, 30 * time.Second, 10 * time.Second, false},
		{"negative lease", -time.Minute, 30 * time.Second, 10 * time.Second, false},
		{"no retry budget", 2 * time.Minute, 0, 10 * time.Second, false},
		{"no pg timeout", 2 * time.Minute, 30 * time.Second, 0, false},
		{"negative pg timeout", 2 * time.Minute, 30 * time.Second, -time.Second, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := checkLease(tc.lease, tc.budget, tc.pgTimeout)
			if tc.ok {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("accepted")
			}
			if code := exitCode(err); code != 2 {
				t.Fatalf("exit code %d, want 2 (usage): %v", code, err)
			}
			for _, want := range []string{"--lease", "--pg-retry-budget", "--pg-timeout"} {
				if !strings.Contains(err.Error(), want) {
					t.Fatalf("the message does not name %s: %v", want, err)
				}
			}
		})
	}
	// The message names the values themselves.
	err := checkLease(50*time.Second, 30*time.Second, 10*time.Second)
	if err == nil {
		t.Fatal("accepted")
	}
	msg := err.Error()
	for _, want := range []string{"50s", "30s", "10s"} {
		if !strings.Contains(msg, want) {
			t.Fatalf("the message does not show %s: %s", want, msg)
		}
	}
}

// serve's own defaults must satisfy the rule: a plain `payflow serve` starts.
func TestServeDefaultsSatisfyTheLeaseRule(t *testing.T) {
	fl := serveCmd().Flags()
	lease, _ := fl.GetDuration("lease")
	budget, _ := fl.GetDuration("pg-retry-budget")
	pgTimeout, _ := fl.GetDuration("pg-timeout")
	if err := checkLease(lease, budget, pgTimeout); err != nil {
		t.Fatal(err)
	}
}

// serve refuses a too short lease before it connects to anything, as a
// usage error.
func TestServeRefusesALeaseNoLongerThanBudgetPlusTwoTimeouts(t *testing.T) {
	t.Setenv("PAYFLOW_MERCHANT_TOKENS", "")
	cmd := serveCmd()
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	cmd.SetArgs([]string{"--brokers", "127.0.0.1:1", "--database-url", "postgres://127.0.0.1:1/none", "--pg-url", "http://127.0.0.1:1",
		"--lease", "4s", "--pg-retry-budget", "2s", "--pg-timeout", "1s"})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := cmd.ExecuteContext(ctx)
	if err == nil {
		t.Fatal("serve started")
	}
	if code := exitCode(err); code != 2 {
		t.Fatalf("exit code %d, want 2: %v", code, err)
	}
	if !strings.Contains(err.Error(), "--lease") {
		t.Fatalf("err = %v", err)
	}
}

func TestExitCodes(t *testing.T) {
	if c := exitCode(nil); c != 0 {
		t.Fatalf("nil: %d", c)
	}
	if c := exitCode(errors.New("database down")); c != 1 {
		t.Fatalf("runtime error: %d", c)
	}
	if c := exitCode(checkLease(time.Second, time.Second, time.Second)); c != 2 {
		t.Fatalf("usage error: %d", c)
	}
}

// A Postgres that accepts TCP and never answers stops serve within the
// connect timeout, with an error that says so, instead of hanging it with
// no output.
func TestServeFailsFastOnAPostgresThatNeverAnswers(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		var held []net.Conn
		defer func() {
			for _, c := range held {
				c.Close()
			}
		}()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			held = append(held, c)
		}
	}()
	t.Setenv("PAYFLOW_MERCHANT_TOKENS", "")
	t.Setenv("PAYFLOW_VAULT_KEY", vault.GenerateKey())
	t.Setenv("PAYFLOW_PG_WEBHOOK_SECRET", stdwebhook.NewSecret())
	t.Setenv("PAYFLOW_DB_CONNECT_TIMEOUT", "1s")
	cmd := serveCmd()
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	cmd.SetArgs([]string{"--brokers", "127.0.0.1:1", "--database-url", "postgres://payflow@" + ln.Addr().String() + "/payflow",
		"--pg-url", "http://127.0.0.1:1", "--log-format", "text"})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	start := time.Now()
	err = cmd.ExecuteContext(ctx)
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("serve gave up after %s, want within the 1s connect timeout: %v", took, err)
	}
	if err == nil || !strings.Contains(err.Error(), "did not answer within 1s") || !strings.Contains(err.Error(), ln.Addr().String()) {
		t.Fatalf("err = %v", err)
	}
	if code := exitCode(err); code != 1 {
		t.Fatalf("exit code %d, want 1", code)
	}
}
