package app

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// The dashboard and the alert rules may only use metrics payflow exports,
// or they silently show nothing when a name drifts.
func TestDeployAssetsUseExportedMetrics(t *testing.T) {
	m := newMetrics()
	// Vectors appear in a gather only once a label set exists.
	m.handled.WithLabelValues("ok")
	m.webhooks.WithLabelValues("sim", "applied")
	m.pgCalls.WithLabelValues("auto_pay", "ok")
	m.results.WithLabelValues("t", "d")
	m.decisions.WithLabelValues("auto_pay", "none")
	m.retries.WithLabelValues("auto_pay")
	m.stuck.WithLabelValues("placing")
	fams, err := m.registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	exported := map[string]bool{}
	for _, f := range fams {
		exported[f.GetName()] = true
	}
	used := regexp.MustCompile(`payflow_[a-z_]+`)
	for _, file := range []string{"../deploy/prometheus/alerts.yml", "../deploy/grafana/dashboards/payflow.json"} {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		names := used.FindAllString(string(b), -1)
		if len(names) < 5 {
			t.Fatalf("%s uses only %d payflow metrics; the check would prove nothing", file, len(names))
		}
		for _, name := range names {
			base := name
			for _, suffix := range []string{"_bucket", "_count", "_sum"} {
				base = strings.TrimSuffix(base, suffix)
			}
			if !exported[name] && !exported[base] {
				t.Errorf("%s uses %s, which payflow does not export", file, name)
			}
		}
	}
}
