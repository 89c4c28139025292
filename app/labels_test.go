package app

import (
	"context"
	"fmt"
	"log/slog"
	"runtime"
	"runtime/debug"
	"testing"

	"github.com/payflow/payflow/pgclient"
	"github.com/payflow/payflow/pgclient/pgsim"
)

// simPG is a PG simulator's in-process client; its bills stay as placed
// until a test settles them. The tests' PGs wrap it, so a call they do not
// fake goes to a PG that passes the shared suite.
func simPG() pgclient.Client {
	sim, err := pgsim.New(pgsim.Config{SettleDelay: -1, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		panic(err)
	}
	return sim.Client()
}

// codePG fails every refund with an error whose kind is a PG's own code, as
// an adapter might classify it.
type codePG struct{ pgclient.Client }

func (codePG) Refund(_ context.Context, r pgclient.RefundRequest) (pgclient.Refunded, error) {
	return pgclient.Refunded{}, &pgclient.Error{Op: "refund", Kind: pgclient.Kind("E" + r.RefundID), Code: "E" + r.RefundID}
}

// labelValues gathers the values label takes in family name.
func labelValues(t *testing.T, m *metricSet, name, label string) map[string]bool {
	t.Helper()
	fams, err := m.registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	vals := map[string]bool{}
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
		for _, s := range f.GetMetric() {
			for _, l := range s.GetLabel() {
				if l.GetName() == label {
					vals[l.GetValue()] = true
				}
			}
		}
	}
	return vals
}

// No label takes a PG's error code or message: each distinct one would be
// a series of its own, for ever.
func TestMetricLabelsTakeNoPGCodes(t *testing.T) {
	metrics := newMetrics()
	o := observer{m: metrics}
	pg := pgclient.Observed(codePG{simPG()}, o)
	for i := range 50 {
		_, _ = pg.Refund(context.Background(), pgclient.RefundRequest{RefundID: fmt.Sprint(4000 + i)})
		o.Result("payment.refund.failed", fmt.Sprintf("pg_rejected: E%d", 4000+i))
		o.Result("payment.charge.failed", fmt.Sprintf("declined: LIMIT_%d", i))
		o.Result("payment.charge.processed", fmt.Sprintf("kakao_bill/Declined %d", i))
	}
	if got := labelValues(t, metrics, "payflow_pg_call_seconds", "outcome"); fmt.Sprint(got) != "map[other:true]" {
		t.Errorf("pg call outcomes: %v", got)
	}
	for _, want := range []string{"pg_rejected", "declined", "kakao_bill"} {
		if !labelValues(t, metrics, "payflow_results_total", "detail")[want] {
			t.Errorf("no result detail %q", want)
		}
	}
	if n := len(labelValues(t, metrics, "payflow_results_total", "detail")); n > 5 {
		t.Errorf("%d result details after 150 distinct PG answers", n)
	}
	if got := labelValues(t, metrics, "payflow_charge_decisions_total", "fallback_reason"); fmt.Sprint(got) != "map[other:true]" {
		t.Errorf("fallback reasons: %v", got)
	}
}

// payflow_build_info is 1 with the version and the Go release.
func TestBuildInfo(t *testing.T) {
	m := newMetrics()
	fams, err := m.registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != "payflow_build_info" {
			continue
		}
		s := f.GetMetric()[0]
		labels := map[string]string{}
		for _, l := range s.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		if s.GetGauge().GetValue() != 1 || labels["version"] != Version() || labels["go_version"] != runtime.Version() || labels["version"] == "" {
			t.Fatalf("payflow_build_info %v = %v", labels, s.GetGauge().GetValue())
		}
		return
	}
	t.Fatal("no payflow_build_info")
}

func TestVersionOf(t *testing.T) {
	for in, want := range map[string]string{"": "devel", "(devel)": "devel", "v1.2.3": "v1.2.3"} {
		if got := versionOf(&debug.BuildInfo{Main: debug.Module{Version: in}}); got != want {
			t.Errorf("versionOf(%q) = %q, want %q", in, got, want)
		}
	}
}
