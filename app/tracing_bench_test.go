package app

import (
	"context"
	"testing"

	"github.com/segmentio/kafka-go"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/payflow/payflow/events"
)

// BenchmarkTracingOff is what tracing adds to one charge when it is off:
// the consume span, the trace context looked for in the message, and the
// decide and commit steps.
func BenchmarkTracingOff(b *testing.B) {
	tr := newTracing(noop.NewTracerProvider())
	m := kafka.Message{Topic: events.TopicRequests, Key: []byte("c-1"),
		Headers: []kafka.Header{{Key: "content-type", Value: []byte(events.ContentType)}},
		Value: []byte(`{"specversion":"1.0","id":"ev-1","source":"shop","type":"payment.charge.requested",` +
			`"subject":"c-1","time":"2026-11-25T00:00:00.000Z","datacontenttype":"application/json",` +
			`"data":{"merchant_id":"m","charge_id":"c-1","amount":15000,"currency":"KRW","order_name":"coffee",` +
			`"customer":{"member_id":"u-1","phone":"010-1234-5678","name":"Kim"}}}`)}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		cctx, span := tr.consume(ctx, m)
		for _, s := range []string{"decide", "commit"} {
			_, done := tr.step(cctx, s)
			done(nil)
		}
		end(span, nil)
	}
}
