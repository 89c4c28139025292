package app

import (
	"context"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/payflow/payflow/store"
)

// clusterGauges are figures about the whole deployment rather than one
// process: read from the database (the outbox backlog, charges that should
// have moved on), every instance would report the same numbers, and a
// dashboard that sums them would show them once per replica. Only the
// process whose outbox relay leads (it holds the relay's advisory lock)
// reports them; in every other process these series do not exist. They are
// read at scrape time, so a process that loses the lead stops reporting at
// once instead of leaving a stale value behind.
type clusterGauges struct {
	st           backlogReader
	leading      func() bool
	reconcileAge time.Duration
	// groupLag is the consumer group's lag by partition (consumer.GroupLag).
	groupLag func(context.Context) (map[int]int64, error)

	backlog, stuck, lag *prometheus.Desc
}

// backlogReader is what the gauges read from the store.
type backlogReader interface {
	Backlog(ctx context.Context, awaitingAge time.Duration) (store.Backlog, error)
}

func newClusterGauges(st backlogReader, leading func() bool, reconcileAge time.Duration, groupLag func(context.Context) (map[int]int64, error)) *clusterGauges {
	return &clusterGauges{
		st: st, leading: leading, reconcileAge: reconcileAge, groupLag: groupLag,
		lag: prometheus.NewDesc("payflow_consumer_lag_messages",
			"Requests in each partition of payment.requests not yet committed by the consumer group (the partition's last offset minus the group's committed offset). "+
				"One series per partition; sum them for the total. Reported only by the process whose outbox relay leads.",
			[]string{"partition"}, nil),
		backlog: prometheus.NewDesc("payflow_outbox_backlog",
			"Outbox rows committed but not yet published. Reported only by the process whose outbox relay leads.", nil, nil),
		stuck: prometheus.NewDesc("payflow_charges_stuck",
			"Charges placing past their lease, or awaiting settlement past twice the reconcile age. Reported only by the process whose outbox relay leads.",
			[]string{"state"}, nil),
	}
}

// Describe implements prometheus.Collector.
func (g *clusterGauges) Describe(ch chan<- *prometheus.Desc) {
	ch <- g.backlog
	ch <- g.stuck
	ch <- g.lag
}

// Collect implements prometheus.Collector: nothing unless this process
// leads, nothing when the database does not answer in time.
func (g *clusterGauges) Collect(ch chan<- prometheus.Metric) {
	if g.leading == nil || !g.leading() {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if g.groupLag != nil {
		if lag, err := g.groupLag(ctx); err == nil {
			for p, n := range lag {
				ch <- prometheus.MustNewConstMetric(g.lag, prometheus.GaugeValue, float64(n), strconv.Itoa(p))
			}
		}
	}
	b, err := g.st.Backlog(ctx, 2*g.reconcileAge)
	if err != nil {
		return
	}
	ch <- prometheus.MustNewConstMetric(g.backlog, prometheus.GaugeValue, float64(b.Unpublished))
	ch <- prometheus.MustNewConstMetric(g.stuck, prometheus.GaugeValue, float64(b.PlacingPastLease), "placing")
	ch <- prometheus.MustNewConstMetric(g.stuck, prometheus.GaugeValue, float64(b.AwaitingSettlement), "requested")
}
