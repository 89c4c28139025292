package deploy

import (
	"os"
	"regexp"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

const runbookBase = "https://github.com/payflow/payflow/blob/main/docs/operations.md#"

type rule struct {
	Alert       string            `json:"alert"`
	Expr        string            `json:"expr"`
	For         string            `json:"for"`
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
}

func alertRules(t *testing.T) []rule {
	t.Helper()
	b, err := os.ReadFile("prometheus/alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Groups []struct {
			Name  string `json:"name"`
			Rules []rule `json:"rules"`
		} `json:"groups"`
	}
	if err := yaml.UnmarshalStrict(b, &doc); err != nil {
		t.Fatal(err)
	}
	var rules []rule
	for _, g := range doc.Groups {
		rules = append(rules, g.Rules...)
	}
	if len(rules) < 5 {
		t.Fatalf("only %d rules", len(rules))
	}
	return rules
}

// githubAnchors are the anchors GitHub gives the headings of a Markdown file.
func githubAnchors(t *testing.T, file string) map[string]bool {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	drop := regexp.MustCompile(`[^a-z0-9 _-]`)
	anchors := map[string]bool{}
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(line, "#") {
			continue
		}
		h := strings.TrimSpace(strings.TrimLeft(line, "#"))
		anchors[strings.ReplaceAll(drop.ReplaceAllString(strings.ToLower(h), ""), " ", "-")] = true
	}
	return anchors
}

// Every rule pages or opens a ticket, and links a runbook section that
// exists in docs/operations.md.
func TestAlertRulesHaveSeveritiesAndRunbooks(t *testing.T) {
	anchors := githubAnchors(t, "../docs/operations.md")
	for _, r := range alertRules(t) {
		if s := r.Labels["severity"]; s != "page" && s != "ticket" {
			t.Errorf("%s: severity %q, want page or ticket", r.Alert, s)
		}
		url := r.Annotations["runbook_url"]
		anchor, ok := strings.CutPrefix(url, runbookBase)
		if !ok || !anchors[anchor] {
			t.Errorf("%s: runbook_url %q is not a section of docs/operations.md", r.Alert, url)
		}
	}
}

// Something must fire when no payflow is scraped at all: every other rule
// is silent when its series are absent.
func TestAnAlertFiresWhenPayflowIsAbsent(t *testing.T) {
	for _, r := range alertRules(t) {
		if strings.Contains(r.Expr, "absent(payflow_build_info)") || strings.Contains(r.Expr, `absent(up{job="payflow"}`) {
			if r.Labels["severity"] != "page" {
				t.Errorf("%s does not page", r.Alert)
			}
			return
		}
	}
	t.Fatal("no rule fires when payflow is absent")
}

// The gauges that describe the whole deployment come from one process (the
// leading relay), possibly two around a hand-over: rules and the dashboard
// must take their max, never add them up across instances.
func TestDeploymentGaugesAreNotSummedAcrossInstances(t *testing.T) {
	for _, file := range []string{"prometheus/alerts.yml", "grafana/dashboards/payflow.json"} {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		text := regexp.MustCompile(`(?m)^\s*#.*$`).ReplaceAllString(string(b), "") // comments
		ok := regexp.MustCompile(`max(\(| by \([a-z_, ]+\) \()(deriv\()?$`)
		for _, name := range []string{"payflow_outbox_backlog", "payflow_charges_stuck", "payflow_consumer_lag_messages"} {
			for _, at := range regexp.MustCompile(name).FindAllStringIndex(text, -1) {
				if before := text[max(0, at[0]-40):at[0]]; !ok.MatchString(before) {
					t.Errorf("%s: %q: aggregate %s with max", file, before+name, name)
				}
			}
		}
	}
}
