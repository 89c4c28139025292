package app

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/payflow/payflow/store"
)

type fakeBacklog struct {
	b   store.Backlog
	err error
	age time.Duration
}

func (f *fakeBacklog) Backlog(_ context.Context, age time.Duration) (store.Backlog, error) {
	f.age = age
	return f.b, f.err
}

// gauges gathers g's series as name{label} → value.
func gauges(t *testing.T, g prometheus.Collector) map[string]float64 {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(g)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			name := mf.GetName()
			for _, l := range m.GetLabel() {
				name += "{" + l.GetName() + "=" + l.GetValue() + "}"
			}
			out[name] = m.GetGauge().GetValue()
		}
	}
	return out
}

// The gauges report the store's backlog, each figure under its own series,
// and charges count as stuck awaiting settlement past twice the reconcile
// age.
func TestClusterGaugesReportTheStoresBacklog(t *testing.T) {
	f := &fakeBacklog{b: store.Backlog{Unpublished: 3, PlacingPastLease: 5, AwaitingSettlement: 7}}
	got := gauges(t, newClusterGauges(f, func() bool { return true }, time.Minute, nil))
	want := map[string]float64{
		"payflow_outbox_backlog":                 3,
		"payflow_charges_stuck{state=placing}":   5,
		"payflow_charges_stuck{state=requested}": 7,
	}
	if len(got) != len(want) {
		t.Fatalf("series %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v (all: %v)", k, got[k], v, got)
		}
	}
	if f.age != 2*time.Minute {
		t.Fatalf("awaiting age = %s, want twice the reconcile age", f.age)
	}
	// A store that does not answer: no figure rather than a wrong one.
	f.err = errors.New("down")
	if got := gauges(t, newClusterGauges(f, func() bool { return true }, time.Minute, nil)); len(got) != 0 {
		t.Fatalf("series %v while the store fails", got)
	}
}
