// Package deploy holds payflow's deployment assets (Kubernetes manifests,
// Prometheus rules, Grafana dashboards); its test validates the manifests
// against the Kubernetes API types, with no cluster needed.
package deploy

import (
	"bytes"
	"os"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"sigs.k8s.io/yaml"
)

// Every document decodes strictly (no unknown or mistyped field) into the
// API type its kind names, and the deployment is wired as payflow needs.
func TestKubernetesManifests(t *testing.T) {
	kinds := map[string]func() any{
		"Deployment":              func() any { return &appsv1.Deployment{} },
		"Service":                 func() any { return &corev1.Service{} },
		"HorizontalPodAutoscaler": func() any { return &autoscalingv2.HorizontalPodAutoscaler{} },
		"PodDisruptionBudget":     func() any { return &policyv1.PodDisruptionBudget{} },
		"Secret":                  func() any { return &corev1.Secret{} },
	}
	seen := map[string]any{}
	for _, file := range []string{"k8s/payflow.yaml", "k8s/secret.example.yaml"} {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		for i, doc := range bytes.Split(b, []byte("\n---\n")) {
			var meta struct{ APIVersion, Kind string }
			if err := yaml.Unmarshal(doc, &meta); err != nil || meta.Kind == "" {
				t.Fatalf("%s document %d: no kind (%v)", file, i, err)
			}
			newObj, ok := kinds[meta.Kind]
			if !ok {
				t.Fatalf("%s document %d: unexpected kind %s", file, i, meta.Kind)
			}
			obj := newObj()
			if err := yaml.UnmarshalStrict(doc, obj); err != nil {
				t.Fatalf("%s %s: %v", file, meta.Kind, err)
			}
			seen[meta.Kind] = obj
		}
	}
	d, ok := seen["Deployment"].(*appsv1.Deployment)
	if !ok {
		t.Fatal("no Deployment")
	}
	c := d.Spec.Template.Spec.Containers[0]
	if c.LivenessProbe == nil || c.LivenessProbe.HTTPGet.Path != "/healthz" || c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet.Path != "/readyz" {
		t.Fatal("probes must use /healthz and /readyz")
	}
	if c.Resources.Requests.Cpu().IsZero() || c.Resources.Limits.Memory().IsZero() {
		t.Fatal("resources must be set")
	}
	secretRefs := map[string]bool{}
	for _, e := range c.Env {
		if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
			secretRefs[e.Name] = true
		} else if strings.Contains(e.Name, "SECRET") || strings.Contains(e.Name, "KEY") || strings.Contains(e.Name, "TOKEN") || e.Name == "DATABASE_URL" {
			t.Errorf("%s is given inline; it must come from the Secret", e.Name)
		}
	}
	for _, want := range []string{"DATABASE_URL", "PAYFLOW_VAULT_KEY", "PAYFLOW_PG_WEBHOOK_SECRET", "PAYFLOW_API_TOKEN", "PAYFLOW_MERCHANT_TOKENS"} {
		if !secretRefs[want] {
			t.Errorf("%s is not read from the Secret", want)
		}
	}
	hpa := seen["HorizontalPodAutoscaler"].(*autoscalingv2.HorizontalPodAutoscaler)
	if hpa.Spec.MaxReplicas > 12 {
		t.Errorf("maxReplicas %d exceeds the 12 partitions of payment.requests", hpa.Spec.MaxReplicas)
	}
	// At the HPA's maximum, every pod's pool plus its relay's lock
	// connection must fit Postgres's default max_connections (100) less
	// superuser_reserved_connections (3).
	maxConns := 32 // payflow's default
	for _, e := range c.Env {
		if e.Name == "PAYFLOW_DB_MAX_CONNS" {
			n, err := strconv.Atoi(e.Value)
			if err != nil || n <= 0 {
				t.Fatalf("PAYFLOW_DB_MAX_CONNS = %q", e.Value)
			}
			maxConns = n
		}
	}
	if need := int(hpa.Spec.MaxReplicas) * (maxConns + 1); need > 100-3 {
		t.Errorf("%d replicas x (%d pooled + 1 relay) = %d connections exceed Postgres's default 97 for applications",
			hpa.Spec.MaxReplicas, maxConns, need)
	}
}
