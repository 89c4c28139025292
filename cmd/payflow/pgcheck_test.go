package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/payflow/payflow/pgclient/pgsim"
)

// pg check against the simulator in PaySSam mode: every step matches, the
// card payment included (the simulated customer pays), and the phone and
// API key are never printed.
func TestPGCheckAgainstTheSimulator(t *testing.T) {
	sim, err := pgsim.New(pgsim.Config{Protocol: pgsim.ProtocolPaySSam, APIKey: "ps_check_key", PaySSamMember: "m",
		PaySSamStores: []string{"STORE1"}, KakaoPayDelay: 200 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(sim.Handler())
	defer func() { srv.Close(); sim.Close() }()
	for k, v := range map[string]string{"PAYFLOW_PAYSSAM_URL": srv.URL, "PAYFLOW_PAYSSAM_API_KEY": "ps_check_key",
		"PAYFLOW_PAYSSAM_MEMBER": "m", "PAYFLOW_PAYSSAM_MERCHANTS": "shop:STORE1", "PAYFLOW_PAYSSAM_ALLOW_FROM": "",
		"PAYFLOW_PAYSSAM_CALLBACK_URL": "https://payflow.example/webhooks/pg/payssam"} {
		t.Setenv(k, v)
	}
	run := func(args ...string) (string, error) {
		root := rootCmd()
		var out bytes.Buffer
		root.SetOut(&out)
		root.SetArgs(append([]string{"pg", "check", "--provider", "payssam", "--phone", "010-9876-5432"}, args...))
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		err := root.ExecuteContext(ctx)
		return out.String(), err
	}
	out, err := run("--pay", "--wait", "10s")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, want := range []string{"/bill sendType=TALK", "/bill with a used billId", "/bill/read of an unknown bill",
		"/bill/destroy of an unpaid bill", "/bill/read of a destroyed bill", "/bill/read after the payment",
		"partial cancel refused unsent", "/bill/cancel in full", "/bill/read of a cancelled bill", "0 differed"} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "DIFF") || strings.Contains(out, "98765432") || strings.Contains(out, "ps_check_key") {
		t.Fatalf("report:\n%s", out)
	}
	if sim.Calls(pgsim.OpRefund) != 1 {
		t.Fatalf("%d cancels reached the PG, want the full one only", sim.Calls(pgsim.OpRefund))
	}

	// A PG that reads otherwise is reported, with exit code 1.
	sim.FailNext(pgsim.OpDestroy, pgsim.FaultUnavailable, 3)
	out, err = run()
	if err == nil || exitCode(err) != 1 || !strings.Contains(out, "DIFF  /bill/destroy") {
		t.Fatalf("exit %d, %v\n%s", exitCode(err), err, out)
	}
	if _, err := run("--phone", "12345"); exitCode(err) != 2 {
		t.Fatalf("a bad phone: exit %d", exitCode(err))
	}
}
