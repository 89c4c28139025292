package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/payflow/payflow/internal/testdb"
	"github.com/payflow/payflow/pgclient/pgsim"
)

// The demo end to end, over real sockets: Kafka protocol, HTTP webhooks
// signed per Standard Webhooks, Postgres. Every scenario must reach its end
// state, and the simulator's ledger must show no bill charged twice.
func TestDemoEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("end to end")
	}
	t.Setenv("DATABASE_URL", testdb.NewDSN(t))
	for _, v := range []string{"PAYFLOW_PG_WEBHOOK_SECRET", "PAYFLOW_VAULT_KEY", "PAYFLOW_API_TOKEN", "PAYFLOW_MERCHANT_TOKENS"} {
		t.Setenv(v, "")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	f := devFlags{kafkaAddr: "127.0.0.1:0", httpAddr: "127.0.0.1:0", pgsimAddr: "127.0.0.1:0",
		pgLatency: 5 * time.Millisecond, kakaoPayDelay: 300 * time.Millisecond, settleDelay: 100 * time.Millisecond}
	d, err := startDev(ctx, f, slog.New(slog.NewTextHandler(io.Discard, nil)), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	var out bytes.Buffer
	if err := runDemo(ctx, d, &out); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "13 of 13 scenarios") {
		t.Fatalf("summary:\n%s", out.String())
	}

	resp, err := http.Get(d.PGSim + "/sim/ledger")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var ledger []pgsim.Entry
	if err := json.NewDecoder(resp.Body).Decode(&ledger); err != nil {
		t.Fatal(err)
	}
	charged := map[string]int{}
	for _, e := range ledger {
		if (e.Op == pgsim.OpAutoPay || e.Op == pgsim.OpKakaoBill) && e.Outcome == "accepted" {
			charged[e.BillID]++
		}
		if e.Outcome == "duplicate" {
			t.Errorf("payflow sent a bill id twice: %+v", e)
		}
	}
	for bill, n := range charged {
		if n > 1 {
			t.Errorf("bill %s charged %d times", bill, n)
		}
	}
	if len(charged) < 6 {
		t.Fatalf("ledger shows only %d placed bills", len(charged))
	}

	// The run shows in the metrics, under payment-domain names.
	mresp, err := http.Get(d.HTTP + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer mresp.Body.Close()
	body, _ := io.ReadAll(mresp.Body)
	for _, want := range []string{
		`payflow_pg_call_seconds_count{operation="auto_pay",outcome="ok"}`,
		`payflow_pg_call_seconds_count{operation="auto_pay",outcome="declined"}`,
		`payflow_pg_call_seconds_count{operation="refund",outcome="ok"}`,
		`payflow_webhooks_total{provider="sim",result="applied"}`,
		`payflow_outbox_relay_lag_seconds_count`,
		`payflow_requests_handled_seconds_count{outcome="ok"}`,
		`payflow_charge_decisions_total{fallback_reason="method_declined",method="kakao_bill"}`,
		`payflow_charge_decisions_total{fallback_reason="none",method="auto_pay"}`,
		`payflow_results_total{detail="amount_exceeds_paid",type="payment.request.rejected"}`,
		`payflow_results_total{detail="paid",type="payment.settled"}`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}
