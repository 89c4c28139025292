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

// The demo with PAYFLOW_PG_PROVIDER=payssam: the PaySSam adapter against
// the simulator in PaySSam mode, its unsigned callbacks confirmed with
// /bill/read, over real sockets.
func TestDemoEndToEndWithPaySSam(t *testing.T) {
	if testing.Short() {
		t.Skip("end to end")
	}
	t.Setenv("DATABASE_URL", testdb.NewDSN(t))
	for _, v := range []string{"PAYFLOW_PG_WEBHOOK_SECRET", "PAYFLOW_VAULT_KEY", "PAYFLOW_API_TOKEN", "PAYFLOW_MERCHANT_TOKENS",
		"PAYFLOW_PAYSSAM_URL", "PAYFLOW_PAYSSAM_API_KEY", "PAYFLOW_PAYSSAM_MEMBER", "PAYFLOW_PAYSSAM_MERCHANTS",
		"PAYFLOW_PAYSSAM_CALLBACK_URL", "PAYFLOW_PAYSSAM_ALLOW_FROM"} {
		t.Setenv(v, "")
	}
	t.Setenv("PAYFLOW_PG_PROVIDER", "payssam")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	f := devFlags{provider: "payssam", kafkaAddr: "127.0.0.1:0", httpAddr: "127.0.0.1:0", pgsimAddr: "127.0.0.1:0",
		pgLatency: 5 * time.Millisecond, kakaoPayDelay: 300 * time.Millisecond, settleDelay: 100 * time.Millisecond}
	var banner bytes.Buffer
	d, err := startDev(ctx, f, slog.New(slog.NewTextHandler(io.Discard, nil)), &banner)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	for _, want := range []string{"pg provider       payssam", "/webhooks/pg/payssam", "PAYFLOW_PAYSSAM_API_KEY=", "PAYFLOW_PAYSSAM_MERCHANTS=demo-merchant:"} {
		if !strings.Contains(banner.String(), want) {
			t.Errorf("dev's banner lacks %q:\n%s", want, banner.String())
		}
	}
	var out bytes.Buffer
	if err := runDemo(ctx, d, &out, nil); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	t.Log(out.String())
	if !strings.Contains(out.String(), "13 of 13 scenarios") || !strings.Contains(out.String(), "PaySSam: full only") {
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
	charged, callbacks := map[string]int{}, 0
	for _, e := range ledger {
		if (e.Op == pgsim.OpAutoPay || e.Op == pgsim.OpKakaoBill) && e.Outcome == "accepted" {
			charged[e.BillID]++
		}
		if e.Op == pgsim.OpWebhook && e.Outcome == "delivered" {
			callbacks++
		}
		if e.Outcome == "duplicate" {
			t.Errorf("payflow sent a bill id twice: %+v", e)
		}
		if e.Op == pgsim.OpRefund && e.Outcome == "invalid" {
			t.Errorf("a partial cancel reached PaySSam: %+v", e)
		}
	}
	for bill, n := range charged {
		if n > 1 {
			t.Errorf("bill %s charged %d times", bill, n)
		}
	}
	if len(charged) < 6 || callbacks == 0 {
		t.Fatalf("ledger shows %d placed bills and %d answered callbacks", len(charged), callbacks)
	}

	mresp, err := http.Get(d.HTTP + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer mresp.Body.Close()
	body, _ := io.ReadAll(mresp.Body)
	for _, want := range []string{
		`payflow_webhooks_total{provider="payssam",result="applied"}`,
		`payflow_results_total{detail="not_supported",type="payment.request.rejected"}`,
		`payflow_pg_points_exhausted_total{operation="kakao_bill"} 0`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}
