package bench

import (
	"encoding/json"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/payflow/payflow/events"
	"github.com/payflow/payflow/payflow"
)

// Every customer of a 20,000-customer run gets a valid phone of its own: a
// generated request the domain rejects would measure the rejection path.
func TestEveryGeneratedPhoneIsValid(t *testing.T) {
	w := W1
	w.Customers = 20000
	seen := map[string]int{}
	for i := 0; i < w.Customers; i++ {
		var ev struct {
			Data struct {
				Customer struct{ Phone string } `json:"customer"`
			} `json:"data"`
		}
		if err := json.Unmarshal(chargeEvent(w, i, "c"), &ev); err != nil {
			t.Fatal(err)
		}
		p, err := payflow.NormalizePhone(ev.Data.Customer.Phone)
		if err != nil {
			t.Fatalf("customer %d: phone %q: %v", i, ev.Data.Customer.Phone, err)
		}
		if j, dup := seen[p]; dup {
			t.Fatalf("customers %d and %d share the phone %s", j, i, p)
		}
		seen[p] = i
	}
}

func TestPerSecond(t *testing.T) {
	ms := time.Millisecond
	secs := perSecond([]time.Duration{500 * ms, 700 * ms, 2100 * ms}, []time.Duration{10 * ms, 30 * ms, 50 * ms},
		[]int64{100, 150, 160, 300, 310})
	if len(secs) != 3 {
		t.Fatalf("%d seconds, want 3 (up to the last result's)", len(secs))
	}
	want := []Second{{Results: 2, P50: 10 * ms, P99: 30 * ms, Commits: 50}, {Commits: 10}, {Results: 1, P50: 50 * ms, P99: 50 * ms, Commits: 140}}
	for i := range want {
		if secs[i] != want[i] {
			t.Errorf("second %d: %+v, want %+v", i, secs[i], want[i])
		}
	}
}

// The first second's p99 is printed apart from the rest's: it alone can
// decide a run's p99.
func TestPrintShowsTheStartApart(t *testing.T) {
	ms := time.Millisecond
	r := Report{Seconds: []Second{{Results: 1800, P99: 230 * ms}, {Results: 1900, P99: 90 * ms}, {}, {Results: 1900, P99: 110 * ms}}}
	var out strings.Builder
	r.Print(&out)
	want := "p99 by second     first 230ms, then at most 110ms (second 4)"
	if !strings.Contains(out.String(), want) {
		t.Fatalf("report lacks %q:\n%s", want, out.String())
	}
	out.Reset()
	Report{Seconds: r.Seconds[:1]}.Print(&out)
	if strings.Contains(out.String(), "p99 by second") {
		t.Fatalf("a one-second run printed p99 by second:\n%s", out.String())
	}
}

func TestBatchSizes(t *testing.T) {
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(strings.NewReader(`# TYPE payflow_group_commit_batch_size histogram
payflow_group_commit_batch_size_bucket{kind="create_charge",le="1"} 2
payflow_group_commit_batch_size_bucket{kind="create_charge",le="2"} 2
payflow_group_commit_batch_size_bucket{kind="create_charge",le="4"} 5
payflow_group_commit_batch_size_bucket{kind="create_charge",le="+Inf"} 6
payflow_group_commit_batch_size_sum{kind="create_charge"} 30
payflow_group_commit_batch_size_count{kind="create_charge"} 6
`))
	if err != nil {
		t.Fatal(err)
	}
	got := batchSizes(fams)["create_charge"]
	want := []Bucket{{1, 2}, {2, 0}, {4, 3}, {math.Inf(1), 1}}
	if len(got) != len(want) {
		t.Fatalf("buckets %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("bucket %d: %v, want %v", i, got[i], want[i])
		}
	}
	if m := batchMean(fams)["create_charge"]; m != 5 {
		t.Errorf("mean %v, want 5", m)
	}
}

// Flush times are read per kind and interpolated within buckets, as
// Prometheus's histogram_quantile does.
func TestFlushTimes(t *testing.T) {
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(strings.NewReader(`# TYPE payflow_group_commit_seconds histogram
payflow_group_commit_seconds_bucket{kind="finish_placing",le="0.001"} 50
payflow_group_commit_seconds_bucket{kind="finish_placing",le="0.002"} 90
payflow_group_commit_seconds_bucket{kind="finish_placing",le="0.004"} 100
payflow_group_commit_seconds_bucket{kind="finish_placing",le="+Inf"} 100
payflow_group_commit_seconds_sum{kind="finish_placing"} 0.1
payflow_group_commit_seconds_count{kind="finish_placing"} 100
payflow_group_commit_seconds_bucket{kind="create_charge",le="0.001"} 0
payflow_group_commit_seconds_bucket{kind="create_charge",le="+Inf"} 0
payflow_group_commit_seconds_sum{kind="create_charge"} 0
payflow_group_commit_seconds_count{kind="create_charge"} 0
`))
	if err != nil {
		t.Fatal(err)
	}
	got := flushTimes(fams)
	if len(got) != 1 {
		t.Fatalf("kinds %v, want finish_placing alone (create_charge never flushed)", got)
	}
	// p50: rank 50, the top of the first bucket; p99: rank 99, nine
	// tenths into (2 ms, 4 ms].
	if ft := got["finish_placing"]; ft != [2]time.Duration{time.Millisecond, 3800 * time.Microsecond} {
		t.Errorf("finish_placing p50, p99 = %v, want 1ms, 3.8ms", ft)
	}
}

// A charge's one result is processed, failed or rejected; the settlement a
// simulator sends later is neither a result nor a duplicate of one.
func TestOnlyAChargeResultCounts(t *testing.T) {
	for typ, want := range map[string]bool{
		events.TypeChargeProcessed: true, events.TypeChargeFailed: true, events.TypeRejected: true,
		events.TypeSettled: false, events.TypeRefundSucceeded: false, events.TypeBillCancelled: false,
	} {
		if got := chargeResult(typ); got != want {
			t.Errorf("chargeResult(%s) = %v, want %v", typ, got, want)
		}
	}
}
