package app_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/payflow/payflow/app"
	"github.com/payflow/payflow/events"
	"github.com/payflow/payflow/stdwebhook"
)

// traceSpans waits until the spans of trace id include every name in want,
// and returns them by name (the last of each name).
func traceSpans(t *testing.T, exp *tracetest.InMemoryExporter, id trace.TraceID, want ...string) map[string]tracetest.SpanStub {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := map[string]tracetest.SpanStub{}
		for _, s := range exp.GetSpans() {
			if s.SpanContext.TraceID() == id {
				got[s.Name] = s
			}
		}
		missing := ""
		for _, n := range want {
			if _, ok := got[n]; !ok {
				missing = n
			}
		}
		if missing == "" {
			return got
		}
		if time.Now().After(deadline) {
			names := make([]string, 0, len(got))
			for n := range got {
				names = append(names, n)
			}
			t.Fatalf("trace %s has no span %q; it has %v", id, missing, names)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// childOf fails unless span's parent is parent.
func childOf(t *testing.T, spans map[string]tracetest.SpanStub, child string, parent trace.SpanID, parentName string) {
	t.Helper()
	if got := spans[child].Parent.SpanID(); got != parent {
		t.Errorf("span %q: parent %s, want %s (%s)", child, got, parent, parentName)
	}
}

// header returns a message's header value.
func header(m kafka.Message, key string) string {
	for _, h := range m.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

// One charge's trace, from the merchant's producer to payment.events:
// consume is the child of the request's traceparent; decide, the PG call
// and commit are consume's children; the publication of the result is the
// child of the commit that wrote it, and the published message carries the
// trace onward. A PG callback's trace runs webhook → settle → publish. Log
// lines written for the request carry its trace id.
func TestOneChargeIsOneTrace(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	secret := stdwebhook.NewSecret()
	p := start(t, acceptingPG(), func(c *app.Config) {
		c.TracerProvider = tp
		c.WebhookSecrets = secret
	})

	traceID, _ := trace.TraceIDFromHex("4bf92f3577b34da6a3ce929d0e0e4736")
	producerSpan, _ := trace.SpanIDFromHex("00f067aa0ba902b7")
	p.publish(t, kafka.Message{Key: []byte("c-traced"),
		Headers: []kafka.Header{{Key: "content-type", Value: []byte(events.ContentType)},
			{Key: "traceparent", Value: []byte("00-" + traceID.String() + "-" + producerSpan.String() + "-01")}},
		Value: []byte(`{"specversion":"1.0","id":"ev-traced","source":"shop","type":"payment.charge.requested",` +
			`"subject":"c-traced","time":"2026-11-25T00:00:00.000Z","datacontenttype":"application/json",` +
			`"data":{"merchant_id":"m","charge_id":"c-traced","amount":15000,"currency":"KRW","order_name":"coffee",` +
			`"customer":{"phone":"010-1234-5678","name":"Kim"}}}`)})

	processed := readEvent(t, p.kafka, nil, events.TopicEvents, events.TypeChargeProcessed)
	spans := traceSpans(t, exp, traceID, "consume payment.requests", "decide", "pg kakao_bill", "commit", "publish payment.events")
	consume := spans["consume payment.requests"]
	childOf(t, spans, "consume payment.requests", producerSpan, "the producer's span")
	if !consume.Parent.IsRemote() {
		t.Errorf("consume's parent is not the remote producer span")
	}
	for _, step := range []string{"decide", "pg kakao_bill", "commit"} {
		childOf(t, spans, step, consume.SpanContext.SpanID(), "consume")
	}
	childOf(t, spans, "publish payment.events", spans["commit"].SpanContext.SpanID(), "commit")
	if spans["decide"].EndTime.After(spans["pg kakao_bill"].StartTime) || spans["pg kakao_bill"].EndTime.After(spans["commit"].StartTime) {
		t.Errorf("steps out of order: decide %v–%v, pg %v–%v, commit %v",
			spans["decide"].StartTime, spans["decide"].EndTime, spans["pg kakao_bill"].StartTime, spans["pg kakao_bill"].EndTime, spans["commit"].StartTime)
	}
	want := fmt.Sprintf("00-%s-%s-01", traceID, spans["publish payment.events"].SpanContext.SpanID())
	if got := header(processed, "traceparent"); got != want {
		t.Errorf("published traceparent %q, want %q (the publish span's)", got, want)
	}
	if !strings.Contains(p.logs.String(), `"trace_id":"`+traceID.String()+`"`) {
		t.Errorf("no log line carries trace_id %s:\n%s", traceID, p.logs.String())
	}

	// The PG's callback for the bill starts a trace of its own.
	var ev struct{ Data events.ChargeProcessed }
	if err := json.Unmarshal(processed.Value, &ev); err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(map[string]any{"bill_id": ev.Data.BillID, "status": "paid", "amount": 15000,
		"pg_tx_id": "tx-" + ev.Data.BillID, "occurred_at": time.Now().UTC().Format(time.RFC3339)})
	secrets, err := stdwebhook.ParseSecrets(secret)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	req, _ := http.NewRequest(http.MethodPost, p.http+"/webhooks/pg/sim", bytes.NewReader(body))
	req.Header.Set("content-type", "application/json")
	req.Header.Set("webhook-id", "msg-traced")
	req.Header.Set("webhook-timestamp", strconv.FormatInt(now.Unix(), 10))
	req.Header.Set("webhook-signature", stdwebhook.Sign(secrets[0], "msg-traced", now, body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("webhook: %s", resp.Status)
	}
	settled := readEvent(t, p.kafka, nil, events.TopicEvents, events.TypeSettled)
	var hook tracetest.SpanStub
	for _, s := range exp.GetSpans() {
		if s.Name == "webhook" {
			hook = s
		}
	}
	if !hook.SpanContext.IsValid() {
		t.Fatal("no webhook span")
	}
	if hook.SpanContext.TraceID() == traceID {
		t.Error("the webhook continued the charge's trace, not a trace of its own")
	}
	spans = traceSpans(t, exp, hook.SpanContext.TraceID(), "webhook", "settle", "publish payment.events")
	childOf(t, spans, "settle", hook.SpanContext.SpanID(), "webhook")
	childOf(t, spans, "publish payment.events", spans["settle"].SpanContext.SpanID(), "settle")
	want = fmt.Sprintf("00-%s-%s-01", hook.SpanContext.TraceID(), spans["publish payment.events"].SpanContext.SpanID())
	if got := header(settled, "traceparent"); got != want {
		t.Errorf("settled traceparent %q, want %q", got, want)
	}
}
