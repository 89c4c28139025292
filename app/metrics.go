package app

import (
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// metricSet is one payflow's Prometheus metrics, in a registry of its own
// (not the global one, and not shared by several payflows in one
// process: each run of app.Run counts only what it did). The observer
// feeds it.
type metricSet struct {
	registry *prometheus.Registry
	handled  *prometheus.HistogramVec
	webhooks *prometheus.CounterVec
	relayLag prometheus.Histogram
	// The group commit of charges' claims, results and default-method
	// reads: items per flush and the flush's round trip, by kind.
	batchSize   *prometheus.HistogramVec
	batchCommit *prometheus.HistogramVec
	pgCalls     *prometheus.HistogramVec
	results     *prometheus.CounterVec
	decisions   *prometheus.CounterVec
	retries     *prometheus.CounterVec
	deadLetters *prometheus.CounterVec
	reconcile   *prometheus.CounterVec
	// pointsExhausted counts PG answers that the partner's prepaid points
	// ran out (PaySSam's POINT_001), by operation: a human must top them up.
	pointsExhausted *prometheus.CounterVec
	buildInfo       *prometheus.GaugeVec
}

func newMetrics() *metricSet {
	m := &metricSet{
		registry: prometheus.NewRegistry(),
		handled: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "payflow_requests_handled_seconds", Help: "Time to handle one input request, by outcome (ok, retry).",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 16),
		}, []string{"outcome"}),
		webhooks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "payflow_webhooks_total", Help: "PG callbacks by provider (unknown for a provider not configured) and result (applied, duplicate, ignored, bad_signature, unknown_bill, amount_mismatch, ...).",
		}, []string{"provider", "result"}),
		relayLag: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "payflow_outbox_relay_lag_seconds", Help: "Time from the writing of an outbox row (inside its transaction, so its commit included) to the broker's acknowledgement of its event.",
			// Fine around the tens of milliseconds a relay should keep
			// to, so that a p99 near 25 ms is read within a few ms.
			Buckets: []float64{0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.025, 0.03, 0.04, 0.05, 0.075, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30},
		}),
	}
	m.batchSize = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "payflow_group_commit_batch_size", Help: "Items per group-commit flush, by kind (create_charge, finish_placing, default_method): 1 while load is low, more while flushes are in flight.",
		Buckets: prometheus.ExponentialBuckets(1, 2, 9),
	}, []string{"kind"})
	m.batchCommit = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "payflow_group_commit_seconds", Help: "Round trip (and commit) of one group-commit flush, by kind (create_charge, finish_placing, default_method).",
		Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
	}, []string{"kind"})
	m.pgCalls = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "payflow_pg_call_seconds", Help: "PG calls by operation and outcome (ok, or the error kind: transient, unknown, declined, ...).",
		Buckets: prometheus.ExponentialBuckets(0.005, 2, 12),
	}, []string{"operation", "outcome"})
	m.results = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "payflow_results_total", Help: "Result events committed, by type and detail (method of a placed charge, reason of a rejection or failure, status of a settlement).",
	}, []string{"type", "detail"})
	m.decisions = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "payflow_charge_decisions_total", Help: "Placed charges by method (auto_pay, kakao_bill) and fallback reason (none, not_member, no_method, method_declined, ...).",
	}, []string{"method", "fallback_reason"})
	m.retries = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "payflow_pg_retries_total", Help: "Retries of PG operations after a transient or unknown failure.",
	}, []string{"operation"})
	m.deadLetters = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "payflow_dead_letters_total", Help: "Input messages copied to payment.requests.dlq, by reason: unparseable, or retries_exhausted (an error that was not temporary on every attempt).",
	}, []string{"reason"})
	for _, reason := range []string{"unparseable", "retries_exhausted"} {
		m.deadLetters.WithLabelValues(reason) // both series exist from the start, at 0
	}
	m.reconcile = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "payflow_reconcile_trouble_total", Help: "Bills reconciliation could not settle as expected: lookup_failed, amount_mismatch (left for an operator), settle_failed (the settlement itself failed: a broken invariant or a refused statement; backed off), late_paid (a bill given up on that the PG executed after all, found by reconciliation or a callback: refund or keep), paid_contradicted (the PG reports paid a bill held declined, failed, cancelled or expired here: not settled; refund or keep).",
	}, []string{"outcome"})
	m.pointsExhausted = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "payflow_pg_points_exhausted_total", Help: "PG calls refused because the partner's prepaid points ran out (PaySSam POINT_001), by operation; KakaoTalk bills fail until someone tops them up.",
	}, []string{"operation"})
	for _, op := range []string{"kakao_bill", "auto_pay"} {
		m.pointsExhausted.WithLabelValues(op) // the series exist from the start, at 0
	}
	m.buildInfo = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "payflow_build_info", Help: "Always 1, labelled with the running build's version and Go release; absent when no payflow is scraped.",
	}, []string{"version", "go_version"})
	m.buildInfo.WithLabelValues(Version(), GoVersion()).Set(1)
	m.registry.MustRegister(m.buildInfo, m.reconcile, m.pointsExhausted, m.handled, m.webhooks, m.relayLag, m.batchSize, m.batchCommit, m.pgCalls,
		m.results, m.decisions, m.retries, m.deadLetters,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// boundedLabel keeps a label value from the worker to a small known set:
// a reason with a detail after a colon ("pg_rejected: E1234", "declined:
// limit_exceeded") keeps only what is before it, and anything that is not
// a short snake_case word becomes "other". A PG's error codes and messages
// would otherwise create a series each.
func boundedLabel(v string) string {
	v, _, _ = strings.Cut(v, ":")
	v = strings.TrimSpace(v)
	if v == "" {
		return v
	}
	if len(v) > 40 {
		return "other"
	}
	for _, r := range v {
		if (r < 'a' || r > 'z') && (r < '0' || r > '9') && r != '_' && r != '.' {
			return "other"
		}
	}
	return v
}
