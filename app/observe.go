package app

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/payflow/payflow/consumer"
	"github.com/payflow/payflow/outbox"
	"github.com/payflow/payflow/pgclient"
	"github.com/payflow/payflow/pgclient/payssam"
	"github.com/payflow/payflow/store"
	"github.com/payflow/payflow/webhook"
	"github.com/payflow/payflow/worker"
)

// observer is how payflow is observed, in one place. Each package that
// does something worth measuring or tracing defines a small Observer
// interface, in the manner of pgx's tracers (worker, consumer, outbox, store,
// webhook, pgclient); all have one shape: a method that returns a context
// and a func starts something, and the func is called once with how it
// ended; any other method is an event. observer implements them all and
// turns what it hears into one run's metrics and spans: each run of Run
// has its own, so several payflows in one process count only their own
// work.
type observer struct {
	m *metricSet
	t tracing
}

var (
	_ worker.Observer   = observer{}
	_ consumer.Observer = observer{}
	_ outbox.Observer   = observer{}
	_ webhook.Observer  = observer{}
	_ pgclient.Observer = observer{}
	_ store.Observer    = observer{}
)

// Attempt implements consumer.Observer: the span of one attempt at an
// input message (the child of the trace context the message carries), and
// its time by outcome: ok when the message is done or dead-lettered, retry
// otherwise.
func (o observer) Attempt(ctx context.Context, m kafka.Message) (context.Context, func(error)) {
	start := time.Now()
	ctx, span := o.t.consume(ctx, m)
	return ctx, func(err error) {
		outcome := "ok"
		var dl *consumer.DeadLetterError
		if errors.As(err, &dl) {
			err = dl.Err // the span records why; the attempt finished the message
		} else if err != nil {
			outcome = "retry"
		}
		end(span, err)
		o.m.handled.WithLabelValues(outcome).Observe(time.Since(start).Seconds())
	}
}

// DeadLettered implements consumer.Observer: a message in the dead-letter
// topic, by reason.
func (o observer) DeadLettered(_ kafka.Message, cause error) {
	reason := "unparseable"
	if errors.Is(cause, consumer.ErrRetriesExhausted) {
		reason = "retries_exhausted"
	}
	o.m.deadLetters.WithLabelValues(reason).Inc()
}

// Step implements worker.Observer: each step of a request is a span.
func (o observer) Step(ctx context.Context, name string) (context.Context, func(error)) {
	return o.t.step(ctx, name)
}

// Result implements worker.Observer: result events by type and detail,
// and placed charges by decision path.
func (o observer) Result(eventType, detail string) {
	switch eventType {
	case "payment.charge.processed", "payment.repay.processed":
		// detail is method/fallback_reason: the decision path.
		method, reason, _ := strings.Cut(detail, "/")
		method, reason = boundedLabel(method), boundedLabel(reason)
		o.m.decisions.WithLabelValues(method, reason).Inc()
		detail = method
	}
	o.m.results.WithLabelValues(eventType, boundedLabel(detail)).Inc()
}

// Retry implements worker.Observer.
func (o observer) Retry(operation string) { o.m.retries.WithLabelValues(operation).Inc() }

// Reconciled implements worker.Observer.
func (o observer) Reconciled(outcome string) { o.m.reconcile.WithLabelValues(outcome).Inc() }

// Call implements pgclient.Observer: the span of a PG call, its latency by
// operation and outcome (ok or the error kind), and PaySSam's exhausted
// points.
func (o observer) Call(ctx context.Context, op string) (context.Context, func(error)) {
	start := time.Now()
	ctx, span := o.t.pgCall(ctx, op)
	return ctx, func(err error) {
		outcome := "ok"
		if err != nil {
			outcome = pgOutcome(pgclient.KindOf(err))
		}
		if payssam.PointsExhausted(err) {
			// Every KakaoTalk bill fails until someone tops the points up.
			o.m.pointsExhausted.WithLabelValues(op).Inc()
		}
		o.m.pgCalls.WithLabelValues(op, outcome).Observe(time.Since(start).Seconds())
		if span != nil {
			end(span, err)
		}
	}
}

// pgOutcome is the kind as a label value: an adapter may set any Kind, and
// the label takes only the known ones ("other" for the rest), never a PG's
// own code.
func pgOutcome(k pgclient.Kind) string {
	switch k {
	case pgclient.KindTransient, pgclient.KindUnknown, pgclient.KindDeclined, pgclient.KindInvalid,
		pgclient.KindNotFound, pgclient.KindDuplicate, pgclient.KindConflict:
		return string(k)
	}
	return "other"
}

// Publish implements outbox.Observer: the span of an event's publication,
// the child of the span that wrote it.
func (o observer) Publish(ctx context.Context, m outbox.Message) (context.Context, func(error)) {
	if !o.t.on {
		return ctx, noEnd
	}
	ctx, span := o.t.outbox.Start(ctx, "publish "+m.Topic, trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(attribute.String("messaging.system", "kafka"),
			attribute.String("messaging.destination.name", m.Topic),
			attribute.String("messaging.message.id", m.EventID)))
	return ctx, func(err error) {
		if err != nil {
			span.SetStatus(codes.Error, err.Error())
		}
		span.End()
	}
}

// Published implements outbox.Observer: the time from a row's commit to
// its publication.
func (o observer) Published(lag time.Duration) { o.m.relayLag.Observe(lag.Seconds()) }

// Callback implements webhook.Observer: PG callbacks by provider and
// result.
func (o observer) Callback(provider, result string) {
	o.m.webhooks.WithLabelValues(provider, result).Inc()
}

// Flushed implements store.Observer: one group-commit flush's items and
// its round trip and commit, by kind.
func (o observer) Flushed(kind string, items int, took time.Duration) {
	o.m.batchSize.WithLabelValues(kind).Observe(float64(items))
	o.m.batchCommit.WithLabelValues(kind).Observe(took.Seconds())
}
