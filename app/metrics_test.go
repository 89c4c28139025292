package app

import (
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/payflow/payflow/api"
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
	m.reconcile.WithLabelValues("late_paid")
	fams, err := m.registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	exported := map[string]bool{}
	for _, f := range fams {
		exported[f.GetName()] = true
	}
	// The cluster gauges exist only in the leading process.
	descs := make(chan *prometheus.Desc, 10)
	newClusterGauges(nil, nil, 0, nil).Describe(descs)
	close(descs)
	name := regexp.MustCompile(`fqName: "([a-z_]+)"`)
	for d := range descs {
		exported[name.FindStringSubmatch(d.String())[1]] = true
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

// Requests to providers that are not configured must not add series to
// /metrics: 2,000 of them once grew it from 27 KB to 16 MB.
func TestWebhookMetricsDoNotGrowWithUnknownProviders(t *testing.T) {
	m := newMetrics()
	rc, err := webhookReceiver(Config{WebhookSecrets: "whsec_c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0", Logger: slog.New(slog.DiscardHandler)}, nil, observer{m: m})
	if err != nil {
		t.Fatal(err)
	}
	h := api.New(api.Config{Webhooks: rc, Logger: slog.New(slog.DiscardHandler)})
	for i := range 500 {
		req := httptest.NewRequest("POST", fmt.Sprintf("/webhooks/pg/random-%d", i), strings.NewReader(`{}`))
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusNotFound {
			t.Fatalf("%d %s", rec.Code, rec.Body)
		}
	}
	// A configured provider with a bad signature is counted under its name.
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("POST", "/webhooks/pg/sim", strings.NewReader(`{}`)))
	if rec.Code != http.StatusUnauthorized {
		t.Fatalf("sim: %d %s", rec.Code, rec.Body)
	}
	fams, err := m.registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	providers := map[string]bool{}
	for _, f := range fams {
		if f.GetName() != "payflow_webhooks_total" {
			continue
		}
		for _, s := range f.GetMetric() {
			for _, l := range s.GetLabel() {
				if l.GetName() == "provider" {
					providers[l.GetValue()] = true
				}
			}
		}
	}
	if len(providers) != 2 || !providers["sim"] || !providers["unknown"] {
		t.Fatalf("%d provider label values, want sim and unknown", len(providers))
	}
}

// The store's group-commit flushes reach the batch-size and commit-latency
// histograms, by kind.
func TestGroupCommitMetrics(t *testing.T) {
	m := newMetrics()
	o := observer{m: m}
	o.Flushed("create_charge", 1, time.Millisecond)
	o.Flushed("create_charge", 40, 3*time.Millisecond)
	o.Flushed("finish_placing", 7, 2*time.Millisecond)
	fams, err := m.registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, f := range fams {
		for _, s := range f.GetMetric() {
			if h := s.GetHistogram(); h != nil && strings.HasPrefix(f.GetName(), "payflow_group_commit") {
				got[f.GetName()+"/"+s.GetLabel()[0].GetValue()] = fmt.Sprintf("%d/%g", h.GetSampleCount(), h.GetSampleSum())
			}
		}
	}
	want := map[string]string{
		"payflow_group_commit_batch_size/create_charge":  "2/41",
		"payflow_group_commit_batch_size/finish_placing": "1/7",
		"payflow_group_commit_seconds/create_charge":     "2/0.004",
		"payflow_group_commit_seconds/finish_placing":    "1/0.002",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q (all: %v)", k, got[k], v, got)
		}
	}
}
