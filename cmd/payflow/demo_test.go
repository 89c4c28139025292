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

	"github.com/segmentio/kafka-go"

	"github.com/payflow/payflow/events"
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
	var rec demoRecord
	if err := runDemo(ctx, d, &out, &rec); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "13 of 13 scenarios") {
		t.Fatalf("summary:\n%s", out.String())
	}

	// Every request the demo sent and every result payflow published meet
	// the contract's schemas (events/asyncapi.yaml).
	// The one request the demo means to be invalid fails its schema, and
	// payflow's rejection of it quotes the schema's message.
	types := map[string]int{}
	rejected := map[string]string{} // request event id → detail of an invalid rejection
	for _, v := range rec.Results {
		if err := events.CheckResult(v); err != nil {
			t.Errorf("result: %v\n%s", err, v)
		}
		var ev struct {
			Type string
			Data struct {
				Reason, Detail string
				RequestEventID string `json:"request_event_id"`
			}
		}
		_ = json.Unmarshal(v, &ev)
		types[ev.Type]++
		if ev.Type == events.TypeRejected && ev.Data.Reason == events.RejectInvalid {
			rejected[ev.Data.RequestEventID] = ev.Data.Detail
		}
	}
	invalid := 0
	for _, v := range rec.Requests {
		err := events.CheckRequest(v)
		if err == nil {
			continue
		}
		invalid++
		env, derr := events.Decode(v)
		if derr != nil {
			t.Fatalf("demo request: %v", derr)
		}
		want := events.ValidateData(env.Type, env.Data)
		if want == nil || rejected[env.ID] != want.Error() {
			t.Errorf("demo request %s breaks its schema (%v); its rejection's detail is %q", env.ID, err, rejected[env.ID])
		}
	}
	if invalid != 1 || len(rejected) != 1 {
		t.Errorf("%d demo requests break their schema and %d were rejected invalid; the demo sends one invalid request", invalid, len(rejected))
	}
	for _, typ := range []string{events.TypeChargeProcessed, events.TypeSettled, events.TypeRefundSucceeded,
		events.TypeRepayProcessed, events.TypeBillCancelled, events.TypeRejected} {
		if types[typ] == 0 {
			t.Errorf("the demo produced no %s (results: %v)", typ, types)
		}
	}
	if len(rec.Requests) != 13 {
		t.Errorf("%d requests recorded", len(rec.Requests))
	}
	deadLettersMeetTheContract(ctx, t, d)

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

// deadLettersMeetTheContract sends the running environment two messages it
// cannot read and holds their dead letters' headers to the contract.
func deadLettersMeetTheContract(ctx context.Context, t *testing.T, d *devEnv) {
	t.Helper()
	w := &kafka.Writer{Addr: kafka.TCP(d.Kafka), Topic: events.TopicRequests, BatchTimeout: 2 * time.Millisecond, RequiredAcks: kafka.RequireAll}
	defer w.Close()
	bad := []kafka.Message{
		{Key: []byte("dlq-1"), Value: []byte("not json")},
		{Key: []byte("dlq-2"), Value: []byte(`{"specversion":"1.0","id":"x","source":"s","type":"payment.unknown","data":{}}`),
			Headers: []kafka.Header{{Key: "content-type", Value: []byte(events.ContentType)}}},
	}
	if err := w.WriteMessages(ctx, bad...); err != nil {
		t.Fatal(err)
	}
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: []string{d.Kafka}, Topic: events.TopicDLQ, Partition: 0, MaxWait: 50 * time.Millisecond})
	defer r.Close()
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for range bad {
		m, err := r.ReadMessage(rctx)
		if err != nil {
			t.Fatalf("reading the dead-letter topic: %v", err)
		}
		h := map[string]string{}
		for _, x := range m.Headers {
			h[x.Key] = string(x.Value)
		}
		if err := events.CheckDeadLetterHeaders(h); err != nil {
			t.Errorf("dead letter of %s: %v (headers %v)", m.Key, err, h)
		}
		if h["dlq-source-topic"] != events.TopicRequests {
			t.Errorf("dead letter of %s: headers %v", m.Key, h)
		}
	}
}
