package worker_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/payflow/payflow/events"
)

// fixture reads a request fixture of the events package under a fresh
// event id (a rejection is recorded per event id, and the fixtures share
// one).
func fixture(t *testing.T, file string) []byte {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var ev map[string]any
	if err := json.Unmarshal(b, &ev); err != nil {
		t.Fatal(err)
	}
	ev["id"] = "fixture-" + filepath.Base(file)
	out, _ := json.Marshal(ev)
	return out
}

// A request whose data breaks its schema is rejected as invalid with the
// schema's rule as the detail, and reaches no PG; the valid fixtures are
// not rejected as invalid.
func TestRequestsAreHeldToTheirSchemas(t *testing.T) {
	e := setup(t, methods{"member-42": "bk_good"})
	invalid, _ := filepath.Glob("../events/testdata/requests/invalid/*.json")
	valid, _ := filepath.Glob("../events/testdata/requests/*.json")
	if len(invalid) == 0 || len(valid) == 0 {
		t.Fatal("no fixtures")
	}
	for _, f := range invalid {
		before := len(e.results())
		e.handle(fixture(t, f))
		res := e.results()
		if len(res) != before+1 {
			t.Fatalf("%s: %d new results", f, len(res)-before)
		}
		want, _ := os.ReadFile(strings.TrimSuffix(f, ".json") + ".want")
		r := res[len(res)-1]
		if r["type"] != events.TypeRejected || data(r)["reason"] != events.RejectInvalid || data(r)["detail"] != strings.TrimSpace(string(want)) {
			t.Errorf("%s: result %v, want rejected invalid %q", f, r, want)
		}
	}
	if n := e.pg.count("kakao_bill") + e.pg.count("auto_pay"); n != 0 {
		t.Fatalf("invalid requests made %d PG calls", n)
	}
	for _, f := range valid {
		before := len(e.results())
		e.handle(fixture(t, f))
		for _, r := range e.results()[before:] {
			if r["type"] == events.TypeRejected && data(r)["reason"] == events.RejectInvalid {
				t.Errorf("%s: rejected: %v", f, data(r)["detail"])
			}
		}
	}
	if e.pg.count("auto_pay") != 1 || e.pg.count("kakao_bill") != 2 {
		t.Fatalf("the valid charges made %d auto-pay and %d KakaoTalk calls", e.pg.count("auto_pay"), e.pg.count("kakao_bill"))
	}
}
