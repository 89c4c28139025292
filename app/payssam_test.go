package app

import (
	"context"
	"testing"

	dto "github.com/prometheus/client_model/go"

	"github.com/payflow/payflow/pgclient"
)

// pointsPG is a PG whose partner points ran out, and that cancels only in
// full.
type pointsPG struct{ pgclient.Client }

func (pointsPG) SendKakaoBill(context.Context, pgclient.KakaoBillRequest) (pgclient.Accepted, error) {
	return pgclient.Accepted{}, &pgclient.Error{Op: "kakao_bill", Kind: pgclient.KindTransient, Code: "POINT_001", Message: "포인트 부족"}
}

func (pointsPG) Capabilities() pgclient.Capabilities { return pgclient.Capabilities{} }

// The observing decorator keeps the adapter's capabilities: without them the
// worker would send a partial refund to a PG that cancels only in full.
func TestObservedPGKeepsCapabilities(t *testing.T) {
	if pgclient.CapabilitiesOf(pgclient.Observed(pointsPG{simPG()}, observer{})).PartialRefund {
		t.Fatal("the decorator claims partial refunds for a PG that cannot do them")
	}
	if !pgclient.CapabilitiesOf(pgclient.Observed(codePG{simPG()}, observer{})).PartialRefund {
		t.Fatal("the decorator took partial refunds from a PG that can do them")
	}
}

// POINT_001 is counted, under a fixed operation label, for the alert.
func TestPointsExhaustedIsCounted(t *testing.T) {
	metrics := newMetrics()
	c := metrics.pointsExhausted.WithLabelValues("kakao_bill")
	value := func() float64 {
		var m dto.Metric
		if err := c.Write(&m); err != nil {
			t.Fatal(err)
		}
		return m.GetCounter().GetValue()
	}
	before := value()
	pg := pgclient.Observed(pointsPG{simPG()}, observer{m: metrics})
	for range 3 {
		_, _ = pg.SendKakaoBill(context.Background(), pgclient.KakaoBillRequest{})
	}
	if got := value() - before; got != 3 {
		t.Fatalf("counted %v, want 3", got)
	}
	if got := labelValues(t, metrics, "payflow_pg_points_exhausted_total", "operation"); len(got) != 2 {
		t.Fatalf("operations %v", got)
	}
}
