// Package deploy holds payflow's deployment assets (the Helm chart,
// Prometheus rules, Grafana dashboards); its tests render and lint the
// chart with the Helm SDK and validate what it renders against the
// Kubernetes API types, with no cluster and no helm binary needed.
package deploy

import (
	"os"
	"path"
	"slices"
	"strconv"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	"helm.sh/helm/v3/pkg/lint"
	"helm.sh/helm/v3/pkg/lint/support"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/yaml"
)

const chartDir = "helm/payflow"

// valueSets are the values the chart ships: its defaults and the example
// per environment.
var valueSets = []string{"", "values-dev.yaml", "values-prod.yaml"}

// kubeVersion is the cluster version the chart is rendered and linted for
// (its Chart.yaml asks for 1.25 or later).
const kubeVersion = "v1.30.0"

// The chart lints clean (no warning or error) with each set of values.
func TestHelmChartLints(t *testing.T) {
	kv, err := chartutil.ParseKubeVersion(kubeVersion)
	if err != nil {
		t.Fatal(err)
	}
	for _, file := range valueSets {
		vals := values(t, file)
		l := lint.AllWithKubeVersion(chartDir, vals, "payments", kv)
		for _, m := range l.Messages {
			if m.Severity >= support.WarningSev {
				t.Errorf("%s: %s", name(file), m)
			}
		}
	}
}

func name(file string) string {
	if file == "" {
		return "values.yaml"
	}
	return file
}

// values reads a values file of the chart ("" for none: the defaults).
func values(t *testing.T, file string) chartutil.Values {
	t.Helper()
	if file == "" {
		return chartutil.Values{}
	}
	v, err := chartutil.ReadValuesFile(path.Join(chartDir, file))
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// render renders the chart as `helm install payflow -n payments -f file`
// would, hooks included, and returns its manifests by template.
func render(t *testing.T, vals chartutil.Values) (map[string]string, chartutil.Values, error) {
	t.Helper()
	ch, err := loader.Load(chartDir)
	if err != nil {
		t.Fatal(err)
	}
	caps := *chartutil.DefaultCapabilities
	kv, err := chartutil.ParseKubeVersion(kubeVersion)
	if err != nil {
		t.Fatal(err)
	}
	caps.KubeVersion = *kv
	// As helm install does, this validates the values against the chart's
	// values.schema.json.
	rv, err := chartutil.ToRenderValues(ch, vals, chartutil.ReleaseOptions{Name: "payflow", Namespace: "payments", Revision: 1, IsInstall: true}, &caps)
	if err != nil {
		return nil, nil, err
	}
	out, err := engine.Engine{Strict: true}.Render(ch, rv)
	if err != nil {
		return nil, nil, err
	}
	merged, _ := rv["Values"].(chartutil.Values)
	if merged == nil {
		m, _ := rv["Values"].(map[string]any)
		merged = m
	}
	manifests := map[string]string{}
	for name, s := range out {
		base := path.Base(name)
		if strings.HasPrefix(base, "_") || base == "NOTES.txt" {
			continue
		}
		manifests[name] = s
	}
	return manifests, merged, nil
}

// serviceMonitor is the part of the Prometheus Operator's ServiceMonitor
// (monitoring.coreos.com/v1) the chart uses: a CRD, checked for its
// structure rather than against its API types.
type serviceMonitor struct {
	APIVersion string            `json:"apiVersion"`
	Kind       string            `json:"kind"`
	Metadata   metav1.ObjectMeta `json:"metadata"`
	Spec       struct {
		Selector  metav1.LabelSelector `json:"selector"`
		Endpoints []struct {
			Port          string `json:"port"`
			Path          string `json:"path"`
			Interval      string `json:"interval"`
			ScrapeTimeout string `json:"scrapeTimeout"`
		} `json:"endpoints"`
	} `json:"spec"`
}

// scaledObject is the part of KEDA's ScaledObject (keda.sh/v1alpha1) the
// chart uses.
type scaledObject struct {
	APIVersion string            `json:"apiVersion"`
	Kind       string            `json:"kind"`
	Metadata   metav1.ObjectMeta `json:"metadata"`
	Spec       struct {
		ScaleTargetRef struct {
			Name string `json:"name"`
		} `json:"scaleTargetRef"`
		MinReplicaCount *int32 `json:"minReplicaCount"`
		MaxReplicaCount *int32 `json:"maxReplicaCount"`
		PollingInterval *int32 `json:"pollingInterval"`
		CooldownPeriod  *int32 `json:"cooldownPeriod"`
		Advanced        *struct {
			HorizontalPodAutoscalerConfig struct {
				Behavior *autoscalingv2.HorizontalPodAutoscalerBehavior `json:"behavior"`
			} `json:"horizontalPodAutoscalerConfig"`
		} `json:"advanced"`
		Triggers []struct {
			Type              string            `json:"type"`
			MetricType        string            `json:"metricType"`
			Metadata          map[string]string `json:"metadata"`
			AuthenticationRef *struct {
				Name string `json:"name"`
			} `json:"authenticationRef"`
		} `json:"triggers"`
	} `json:"spec"`
}

// kinds are the kinds the chart may render, each with the type its
// documents must decode into strictly.
var kinds = map[string]func() any{
	"Deployment":              func() any { return &appsv1.Deployment{} },
	"Service":                 func() any { return &corev1.Service{} },
	"ConfigMap":               func() any { return &corev1.ConfigMap{} },
	"HorizontalPodAutoscaler": func() any { return &autoscalingv2.HorizontalPodAutoscaler{} },
	"PodDisruptionBudget":     func() any { return &policyv1.PodDisruptionBudget{} },
	"Job":                     func() any { return &batchv1.Job{} },
	"NetworkPolicy":           func() any { return &networkingv1.NetworkPolicy{} },
	"Ingress":                 func() any { return &networkingv1.Ingress{} },
	"ServiceMonitor":          func() any { return &serviceMonitor{} },
	"ScaledObject":            func() any { return &scaledObject{} },
}

var apiVersions = map[string]string{
	"Deployment": "apps/v1", "Service": "v1", "ConfigMap": "v1", "HorizontalPodAutoscaler": "autoscaling/v2",
	"PodDisruptionBudget": "policy/v1", "Job": "batch/v1", "NetworkPolicy": "networking.k8s.io/v1",
	"Ingress": "networking.k8s.io/v1", "ServiceMonitor": "monitoring.coreos.com/v1", "ScaledObject": "keda.sh/v1alpha1",
}

// decodeAll decodes every rendered document strictly into its kind's type,
// by kind; a kind may appear once.
func decodeAll(t *testing.T, manifests map[string]string) map[string]any {
	t.Helper()
	objs := map[string]any{}
	for file, s := range manifests {
		for i, doc := range strings.Split(s, "\n---\n") {
			if empty(doc) {
				continue
			}
			var meta struct{ APIVersion, Kind string }
			if err := yaml.Unmarshal([]byte(doc), &meta); err != nil || meta.Kind == "" {
				t.Fatalf("%s document %d: no kind (%v)\n%s", file, i, err, doc)
			}
			newObj, ok := kinds[meta.Kind]
			if !ok {
				t.Fatalf("%s: unexpected kind %s", file, meta.Kind)
			}
			if meta.APIVersion != apiVersions[meta.Kind] {
				t.Errorf("%s: %s has apiVersion %s, want %s", file, meta.Kind, meta.APIVersion, apiVersions[meta.Kind])
			}
			obj := newObj()
			if err := yaml.UnmarshalStrict([]byte(doc), obj); err != nil {
				t.Fatalf("%s %s: %v\n%s", file, meta.Kind, err, doc)
			}
			if _, dup := objs[meta.Kind]; dup {
				t.Fatalf("two documents of kind %s", meta.Kind)
			}
			objs[meta.Kind] = obj
		}
	}
	return objs
}

// empty reports a document of only comments and blank lines.
func empty(doc string) bool {
	for _, line := range strings.Split(doc, "\n") {
		if l := strings.TrimSpace(line); l != "" && !strings.HasPrefix(l, "#") && l != "---" {
			return false
		}
	}
	return true
}

// The chart renders, with each set of values, documents that decode
// strictly into the Kubernetes API types (the CRDs into their structure),
// wired to each other and to payflow as it needs, within the connection
// budget.
func TestHelmChartRenders(t *testing.T) {
	for _, file := range valueSets {
		t.Run(name(file), func(t *testing.T) {
			manifests, vals, err := render(t, values(t, file))
			if err != nil {
				t.Fatal(err)
			}
			objs := decodeAll(t, manifests)
			checkChart(t, objs, vals)
		})
	}
}

func checkChart(t *testing.T, objs map[string]any, vals chartutil.Values) {
	d, ok := objs["Deployment"].(*appsv1.Deployment)
	if !ok {
		t.Fatal("no Deployment")
	}
	cm, ok := objs["ConfigMap"].(*corev1.ConfigMap)
	if !ok {
		t.Fatal("no ConfigMap")
	}
	svc, ok := objs["Service"].(*corev1.Service)
	if !ok {
		t.Fatal("no Service")
	}
	pod := d.Spec.Template
	podLabels := labels.Set(pod.Labels)
	sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
	if err != nil || !sel.Matches(podLabels) {
		t.Fatalf("the Deployment's selector %v does not match its pods %v", d.Spec.Selector, pod.Labels)
	}
	if !labels.SelectorFromSet(svc.Spec.Selector).Matches(podLabels) {
		t.Errorf("the Service's selector %v does not match the pods", svc.Spec.Selector)
	}

	c := pod.Spec.Containers[0]
	if c.LivenessProbe == nil || c.LivenessProbe.HTTPGet.Path != "/healthz" || c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet.Path != "/readyz" {
		t.Error("probes must use /healthz and /readyz")
	}
	if c.Resources.Requests.Cpu().IsZero() || c.Resources.Limits.Memory().IsZero() {
		t.Error("resources must be set")
	}
	if pod.Spec.SecurityContext == nil || pod.Spec.SecurityContext.RunAsNonRoot == nil || !*pod.Spec.SecurityContext.RunAsNonRoot ||
		c.SecurityContext == nil || c.SecurityContext.ReadOnlyRootFilesystem == nil || !*c.SecurityContext.ReadOnlyRootFilesystem {
		t.Error("the pod must run as non-root on a read-only root file system")
	}
	if len(c.EnvFrom) != 1 || c.EnvFrom[0].ConfigMapRef == nil || c.EnvFrom[0].ConfigMapRef.Name != cm.Name {
		t.Errorf("the container does not read the ConfigMap %s: %+v", cm.Name, c.EnvFrom)
	}
	for name, v := range cm.Data {
		if looksSecret(name) {
			t.Errorf("ConfigMap holds %s=%q; it must come from the Secret", name, v)
		}
	}

	// Secrets come from the Secret, and the example Secret has every key
	// the chart requires.
	example := exampleSecret(t)
	secretRefs := map[string]bool{}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil:
			ref := e.ValueFrom.SecretKeyRef
			secretRefs[e.Name] = true
			if _, ok := example.StringData[ref.Key]; !ok && (ref.Optional == nil || !*ref.Optional) {
				t.Errorf("%s reads key %s, which secret.example.yaml lacks", e.Name, ref.Key)
			}
		case looksSecret(e.Name):
			t.Errorf("%s is given inline; it must come from the Secret", e.Name)
		}
	}
	for _, want := range []string{"DATABASE_URL", "PAYFLOW_VAULT_KEY", "PAYFLOW_PG_WEBHOOK_SECRET", "PAYFLOW_API_TOKEN", "PAYFLOW_MERCHANT_TOKENS"} {
		if !secretRefs[want] {
			t.Errorf("%s is not read from the Secret", want)
		}
	}

	// The migration Job runs payflow migrate before the pods, which then
	// leave the schema alone; without it, every pod migrates at start.
	job, hasJob := objs["Job"].(*batchv1.Job)
	migrationOn := get(vals, "migration", "enabled") == true
	if hasJob != migrationOn {
		t.Fatalf("migration.enabled=%v but a Job rendered: %v", migrationOn, hasJob)
	}
	if slices.Contains(c.Args, "--migrate=false") != migrationOn {
		t.Errorf("serve args %v with migration.enabled=%v", c.Args, migrationOn)
	}
	if hasJob {
		jc := job.Spec.Template.Spec.Containers[0]
		if !slices.Equal(jc.Args, []string{"migrate"}) || jc.Image != c.Image {
			t.Errorf("the Job runs %s %v, want %s migrate", jc.Image, jc.Args, c.Image)
		}
		if !strings.Contains(job.Annotations["helm.sh/hook"], "pre-install") || !strings.Contains(job.Annotations["helm.sh/hook"], "pre-upgrade") {
			t.Errorf("the Job's hook is %q", job.Annotations["helm.sh/hook"])
		}
		if job.Spec.Template.Spec.RestartPolicy != corev1.RestartPolicyNever {
			t.Errorf("the Job's restartPolicy is %s", job.Spec.Template.Spec.RestartPolicy)
		}
		if len(jc.Env) == 0 || jc.Env[0].Name != "DATABASE_URL" || jc.Env[0].ValueFrom == nil || jc.Env[0].ValueFrom.SecretKeyRef == nil {
			t.Error("the Job must read DATABASE_URL from the Secret")
		}
		if labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(job.Spec.Template.Labels)) {
			t.Error("the Service would send traffic to the migration Job's pod")
		}
	}

	// Scaling: an HPA on CPU, or a ScaledObject on the group's lag, never
	// both, never beyond the partitions of payment.requests.
	hpa, hasHPA := objs["HorizontalPodAutoscaler"].(*autoscalingv2.HorizontalPodAutoscaler)
	so, hasSO := objs["ScaledObject"].(*scaledObject)
	maxPods := 0
	switch {
	case hasHPA && hasSO:
		t.Fatal("both an HPA and a KEDA ScaledObject: they would fight over the Deployment")
	case hasHPA:
		maxPods = int(hpa.Spec.MaxReplicas)
		if hpa.Spec.ScaleTargetRef.Name != d.Name || hpa.Spec.ScaleTargetRef.Kind != "Deployment" {
			t.Errorf("the HPA scales %+v", hpa.Spec.ScaleTargetRef)
		}
		if d.Spec.Replicas != nil {
			t.Error("with an autoscaler the Deployment must not set replicas")
		}
	case hasSO:
		if so.Spec.MaxReplicaCount == nil || so.Spec.ScaleTargetRef.Name != d.Name {
			t.Fatalf("the ScaledObject: %+v", so.Spec)
		}
		maxPods = int(*so.Spec.MaxReplicaCount)
		var kafka bool
		for _, tr := range so.Spec.Triggers {
			if tr.Type != "kafka" {
				continue
			}
			kafka = true
			m := tr.Metadata
			if m["consumerGroup"] != cm.Data["PAYFLOW_GROUP_ID"] || m["topic"] != cm.Data["PAYFLOW_TOPIC_REQUESTS"] || m["bootstrapServers"] == "" {
				t.Errorf("the Kafka trigger watches %v; payflow's group is %s on %s", m, cm.Data["PAYFLOW_GROUP_ID"], cm.Data["PAYFLOW_TOPIC_REQUESTS"])
			}
			if n, err := strconv.Atoi(m["lagThreshold"]); err != nil || n <= 0 {
				t.Errorf("lagThreshold %q", m["lagThreshold"])
			}
		}
		if !kafka {
			t.Error("the ScaledObject has no Kafka trigger")
		}
		if d.Spec.Replicas != nil {
			t.Error("with an autoscaler the Deployment must not set replicas")
		}
	default:
		if d.Spec.Replicas == nil {
			t.Fatal("no autoscaler and no replicas")
		}
		maxPods = int(*d.Spec.Replicas)
	}
	if maxPods > 12 {
		t.Errorf("up to %d pods, beyond the 12 partitions of payment.requests", maxPods)
	}

	// The connection budget (docs/operations.md): at the autoscaler's
	// maximum plus the rollout's surge, every pod's pool and relay
	// connection, the migration Job's and the other clients' fit the
	// server's max_connections less the reserved ones.
	pool, err := strconv.Atoi(cm.Data["PAYFLOW_DB_MAX_CONNS"])
	if err != nil || pool <= 0 {
		t.Fatalf("PAYFLOW_DB_MAX_CONNS = %q", cm.Data["PAYFLOW_DB_MAX_CONNS"])
	}
	surge := d.Spec.Strategy.RollingUpdate.MaxSurge.IntValue()
	need := (maxPods+surge)*(pool+1) + num(get(vals, "database", "otherConnections"))
	if hasJob {
		need++
	}
	have := num(get(vals, "database", "maxConnections")) - num(get(vals, "database", "reservedConnections"))
	if need > have || have <= 0 {
		t.Errorf("(%d pods + %d surge) x (%d pooled + 1 relay) + migration + other = %d connections; Postgres allows %d", maxPods, surge, pool, need, have)
	}

	if pdb, ok := objs["PodDisruptionBudget"].(*policyv1.PodDisruptionBudget); ok {
		s, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
		if err != nil || !s.Matches(podLabels) {
			t.Errorf("the PDB's selector does not match the pods")
		}
		minPods := maxPods
		if hasHPA {
			minPods = int(*hpa.Spec.MinReplicas)
		} else if hasSO {
			minPods = int(*so.Spec.MinReplicaCount)
		}
		if pdb.Spec.MinAvailable.IntValue() >= minPods {
			t.Errorf("the PDB keeps %s of at least %d pods available: no pod could ever be evicted", pdb.Spec.MinAvailable.String(), minPods)
		}
	}
	if sm, ok := objs["ServiceMonitor"].(*serviceMonitor); ok {
		s, err := metav1.LabelSelectorAsSelector(&sm.Spec.Selector)
		if err != nil || !s.Matches(labels.Set(svc.Labels)) {
			t.Errorf("the ServiceMonitor's selector %v does not match the Service's labels %v", sm.Spec.Selector, svc.Labels)
		}
		if len(sm.Spec.Endpoints) != 1 || sm.Spec.Endpoints[0].Port != svc.Spec.Ports[0].Name || sm.Spec.Endpoints[0].Path != "/metrics" {
			t.Errorf("the ServiceMonitor scrapes %+v", sm.Spec.Endpoints)
		}
	}
	if np, ok := objs["NetworkPolicy"].(*networkingv1.NetworkPolicy); ok {
		s, err := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector)
		if err != nil || !s.Matches(podLabels) || (hasJob && !s.Matches(labels.Set(job.Spec.Template.Labels))) {
			t.Error("the NetworkPolicy does not select the pods (and the migration Job's)")
		}
		var dns, postgres bool
		for _, r := range np.Spec.Egress {
			for _, p := range r.Ports {
				dns = dns || p.Port.IntValue() == 53
				postgres = postgres || p.Port.IntValue() == 5432
			}
		}
		if !dns || !postgres {
			t.Errorf("egress allows DNS %v, Postgres %v", dns, postgres)
		}
		if len(np.Spec.Ingress) != 1 || np.Spec.Ingress[0].Ports[0].Port.String() != "http" {
			t.Errorf("ingress %+v", np.Spec.Ingress)
		}
	}
	if ing, ok := objs["Ingress"].(*networkingv1.Ingress); ok {
		paths := 0
		for _, r := range ing.Spec.Rules {
			for _, p := range r.HTTP.Paths {
				paths++
				if p.Backend.Service == nil || p.Backend.Service.Name != svc.Name || p.Backend.Service.Port.Name != svc.Spec.Ports[0].Name {
					t.Errorf("ingress path %s goes to %+v", p.Path, p.Backend)
				}
				if p.Path == "/metrics" {
					t.Error("/metrics must not be exposed")
				}
			}
		}
		if paths == 0 {
			t.Error("an Ingress with no paths")
		}
	}
}

func looksSecret(name string) bool {
	return name == "DATABASE_URL" || strings.Contains(name, "SECRET") || strings.Contains(name, "TOKEN") ||
		strings.Contains(name, "PASSWORD") || strings.HasSuffix(name, "_API_KEY") || name == "PAYFLOW_VAULT_KEY" || name == "PAYFLOW_MERCHANT_KEYS"
}

func get(v any, keys ...string) any {
	for _, k := range keys {
		switch m := v.(type) {
		case chartutil.Values:
			v = m[k]
		case map[string]any:
			v = m[k]
		default:
			return nil
		}
	}
	return v
}

func num(v any) int {
	switch n := v.(type) {
	case float64:
		return int(n)
	case int:
		return n
	case int64:
		return int(n)
	}
	return 0
}

// exampleSecret is deploy/helm/secret.example.yaml, decoded strictly.
func exampleSecret(t *testing.T) *corev1.Secret {
	t.Helper()
	b, err := os.ReadFile("helm/secret.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var s corev1.Secret
	if err := yaml.UnmarshalStrict(b, &s); err != nil {
		t.Fatal(err)
	}
	return &s
}

// The chart refuses values that would break the connection budget, put a
// secret in the ConfigMap or do not match its values schema, and renders KEDA's ScaledObject in place of
// the HPA when asked.
func TestHelmChartRefusesUnsafeValues(t *testing.T) {
	for _, c := range []struct {
		name string
		vals string
		want string
	}{
		{"a pool too large for max_connections", "database: {poolSize: 8}", "connection budget exceeded: 12 pods x (8 pooled + 1 relay) + 1 migration + 0 other = 109 connections, but Postgres allows 97"},
		{"a surge the budget cannot hold", "rollingUpdate: {maxSurge: 1}", "connection budget exceeded"},
		{"a surge in percent", `rollingUpdate: {maxSurge: "25%"}`, "rollingUpdate.maxSurge must be a number of pods"},
		{"a secret in the ConfigMap", "config: {PAYFLOW_API_TOKEN: abc}", "config.PAYFLOW_API_TOKEN looks like a secret"},
		{"the pool size in the ConfigMap", "config: {PAYFLOW_DB_MAX_CONNS: '50'}", "config.PAYFLOW_DB_MAX_CONNS is set by the chart"},
		{"a pool size that is not a number (values.schema.json)", "database: {poolSize: seven}", "at '/database/poolSize': got string, want integer"},
		{"a misspelt value (values.schema.json)", "autoscaling: {keda: {enabeld: true}}", "additional properties 'enabeld' not allowed"},
	} {
		var vals chartutil.Values
		if err := yaml.Unmarshal([]byte(c.vals), &vals); err != nil {
			t.Fatal(err)
		}
		_, _, err := render(t, vals)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want %q", c.name, err, c.want)
		}
	}
	// Fewer pods make room for a larger pool.
	var vals chartutil.Values
	_ = yaml.Unmarshal([]byte("database: {poolSize: 10}\nautoscaling: {maxReplicas: 8}"), &vals)
	if _, _, err := render(t, vals); err != nil {
		t.Errorf("8 pods x 11 + 1 = 89 connections: %v", err)
	}

	var keda chartutil.Values
	_ = yaml.Unmarshal([]byte("autoscaling: {keda: {enabled: true}}"), &keda)
	m, _, err := render(t, keda)
	if err != nil {
		t.Fatal(err)
	}
	objs := decodeAll(t, m)
	if _, ok := objs["HorizontalPodAutoscaler"]; ok {
		t.Error("KEDA on, and an HPA too")
	}
	so, ok := objs["ScaledObject"].(*scaledObject)
	if !ok || so.Spec.Triggers[0].Metadata["bootstrapServers"] != "kafka-0.kafka:9092,kafka-1.kafka:9092,kafka-2.kafka:9092" {
		t.Errorf("ScaledObject %+v", so)
	}
}
