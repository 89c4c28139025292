package app

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"strings"

	"github.com/segmentio/kafka-go"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// Tracing: payflow's spans are OpenTelemetry's, made here and nowhere else
// (the packages tell of their work through their Observers, all
// implemented by observer; the outbox stores and forwards the W3C trace
// context). A request's trace is
//
//	consume payment.requests  (child of the producer's traceparent, if any)
//	├── decide
//	├── pg auto_pay | pg kakao_bill | pg lookup ...
//	└── commit
//	publish payment.events    (child of the span that wrote the event)
//
// and a PG callback's is webhook → settle → publish.

const tracerName = "github.com/payflow/payflow"

// tracing makes payflow's spans. With tracing off its tracer is a no-op
// and nothing is recorded, but an incoming trace context is still passed
// on to the events the request causes.
type tracing struct {
	tracer trace.Tracer
	// outbox makes the spans of publications, under the outbox's name.
	outbox trace.Tracer
	on     bool
}

func newTracing(tp trace.TracerProvider) tracing {
	_, off := tp.(noop.TracerProvider)
	return tracing{tracer: tp.Tracer(tracerName), outbox: tp.Tracer(tracerName + "/outbox"), on: !off}
}

// tracerProviderFromEnv reads the OpenTelemetry SDK's standard variables:
// export is on when OTEL_TRACES_EXPORTER is otlp, or when it is unset and
// an OTLP endpoint (OTEL_EXPORTER_OTLP_ENDPOINT or
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) is; off otherwise, and whenever
// OTEL_SDK_DISABLED is true or OTEL_TRACES_EXPORTER is none. The exporter
// speaks OTLP over HTTP and reads its other OTEL_EXPORTER_OTLP_* settings
// (headers, TLS, timeout) itself; the sampler follows OTEL_TRACES_SAMPLER
// (default: the parent's decision, else always).
func tracerProviderFromEnv(ctx context.Context) (trace.TracerProvider, func(context.Context) error, error) {
	off := func(context.Context) error { return nil }
	if v, _ := strconv.ParseBool(os.Getenv("OTEL_SDK_DISABLED")); v {
		return noop.NewTracerProvider(), off, nil
	}
	switch exp := strings.TrimSpace(os.Getenv("OTEL_TRACES_EXPORTER")); exp {
	case "none":
		return noop.NewTracerProvider(), off, nil
	case "":
		if os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") == "" && os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") == "" {
			return noop.NewTracerProvider(), off, nil
		}
	case "otlp":
		if p := os.Getenv("OTEL_EXPORTER_OTLP_PROTOCOL"); p != "" && p != "http/protobuf" {
			return nil, nil, fmt.Errorf("app: OTEL_EXPORTER_OTLP_PROTOCOL=%s: payflow exports traces over http/protobuf only", p)
		}
	default:
		return nil, nil, fmt.Errorf("app: OTEL_TRACES_EXPORTER=%s: payflow exports traces with otlp or none", exp)
	}
	exporter, err := otlptracehttp.New(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("app: OTLP trace exporter: %w", err)
	}
	res, err := resource.New(ctx,
		resource.WithAttributes(attribute.String("service.name", "payflow"), attribute.String("service.version", Version())),
		resource.WithFromEnv()) // OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES override
	if err != nil {
		return nil, nil, fmt.Errorf("app: trace resource: %w", err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exporter), sdktrace.WithResource(res))
	return tp, tp.Shutdown, nil
}

// end ends span with err's status.
func end(span trace.Span, err error) {
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}

// consume starts the span of one attempt at an input message, as the child
// of the trace context the message carries (see messageTrace).
func (t tracing) consume(ctx context.Context, m kafka.Message) (context.Context, trace.Span) {
	if c := messageTrace(m); c != nil {
		ctx = propagation.TraceContext{}.Extract(ctx, c)
	}
	if !t.on {
		// Nothing to record; a remote parent still reaches the outbox.
		return ctx, trace.SpanFromContext(ctx)
	}
	return t.tracer.Start(ctx, "consume "+m.Topic, trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithAttributes(
			attribute.String("messaging.system", "kafka"),
			attribute.String("messaging.destination.name", m.Topic),
			attribute.Int("messaging.destination.partition.id", m.Partition),
			attribute.Int64("messaging.kafka.offset", m.Offset),
			attribute.String("messaging.kafka.message.key", string(m.Key)),
		))
}

// messageTrace returns the W3C trace context a request carries, nil when
// none: the traceparent and tracestate headers, else the binary-mode
// CloudEvents headers ce_traceparent and ce_tracestate, else the
// distributed-tracing extension attributes of a structured-mode event.
func messageTrace(m kafka.Message) propagation.MapCarrier {
	var tp, ts, ceTP, ceTS string
	for _, h := range m.Headers {
		switch h.Key {
		case "traceparent":
			tp = string(h.Value)
		case "tracestate":
			ts = string(h.Value)
		case "ce_traceparent":
			ceTP = string(h.Value)
		case "ce_tracestate":
			ceTS = string(h.Value)
		}
	}
	if tp == "" && ceTP != "" {
		tp, ts = ceTP, ceTS
	}
	if tp == "" && bytes.Contains(m.Value, []byte(`"traceparent"`)) {
		var ext struct {
			TraceParent string `json:"traceparent"`
			TraceState  string `json:"tracestate"`
		}
		if json.Unmarshal(m.Value, &ext) == nil {
			tp, ts = ext.TraceParent, ext.TraceState
		}
	}
	if tp == "" {
		return nil
	}
	c := propagation.MapCarrier{"traceparent": tp}
	if ts != "" {
		c["tracestate"] = ts
	}
	return c
}

// step starts the span of one step of a request.
func (t tracing) step(ctx context.Context, name string) (context.Context, func(error)) {
	if !t.on {
		return ctx, noEnd
	}
	ctx, span := t.tracer.Start(ctx, name)
	return ctx, func(err error) { end(span, err) }
}

func noEnd(error) {}

// pgCall starts the span of a PG call.
func (t tracing) pgCall(ctx context.Context, op string) (context.Context, trace.Span) {
	if !t.on {
		return ctx, nil
	}
	return t.tracer.Start(ctx, "pg "+op, trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(attribute.String("payflow.pg.operation", op)))
}

// webhook wraps the PG callback endpoint in a server span, the child of a
// traceparent the PG sends, if any.
func (t tracing) webhook(h http.Handler) http.Handler {
	if !t.on {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := propagation.TraceContext{}.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
		ctx, span := t.tracer.Start(ctx, "webhook", trace.WithSpanKind(trace.SpanKindServer),
			trace.WithAttributes(attribute.String("http.request.method", r.Method), attribute.String("url.path", r.URL.Path)))
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		h.ServeHTTP(rec, r.WithContext(ctx))
		span.SetAttributes(attribute.Int("http.response.status_code", rec.status))
		if rec.status >= 500 {
			span.SetStatus(codes.Error, http.StatusText(rec.status))
		}
		span.End()
	})
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(status int) {
	r.status = status
	r.ResponseWriter.WriteHeader(status)
}

// traceLog adds trace_id and span_id to every log line written with the
// context of a traced request (the *Context logging calls).
type traceLog struct{ slog.Handler }

func (h traceLog) Handle(ctx context.Context, r slog.Record) error {
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		r.AddAttrs(slog.String("trace_id", sc.TraceID().String()), slog.String("span_id", sc.SpanID().String()))
	}
	return h.Handler.Handle(ctx, r)
}

func (h traceLog) WithAttrs(as []slog.Attr) slog.Handler { return traceLog{h.Handler.WithAttrs(as)} }
func (h traceLog) WithGroup(name string) slog.Handler    { return traceLog{h.Handler.WithGroup(name)} }
