package deploy

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/payflow/payflow/pgclient/pgsim"
)

// docker-compose.yml, checked as a file: no Docker is needed.

type composeFile struct {
	Services map[string]composeService `json:"services"`
	Volumes  map[string]any            `json:"volumes"`
}

type composeService struct {
	Image       string          `json:"image"`
	Build       json.RawMessage `json:"build"`
	Command     []string        `json:"command"`
	Environment json.RawMessage `json:"environment"`
	EnvFile     json.RawMessage `json:"env_file"`
	Healthcheck *struct {
		Test    json.RawMessage `json:"test"`
		Disable bool            `json:"disable"`
	} `json:"healthcheck"`
	Volumes []string `json:"volumes"`
}

func readCompose(t *testing.T) composeFile {
	t.Helper()
	b, err := os.ReadFile("../docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	var c composeFile
	if err := yaml.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	if len(c.Services) < 5 {
		t.Fatalf("only %d services", len(c.Services))
	}
	return c
}

// env is the service's environment, in either of compose's forms.
func (s composeService) env(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	if len(s.Environment) == 0 || string(s.Environment) == "null" {
		return out
	}
	var m map[string]any
	if err := json.Unmarshal(s.Environment, &m); err == nil {
		for k, v := range m {
			if v == nil {
				v = ""
			}
			out[k] = fmt.Sprint(v)
		}
		return out
	}
	var list []string
	if err := json.Unmarshal(s.Environment, &list); err != nil {
		t.Fatalf("environment: %v", err)
	}
	for _, kv := range list {
		k, v, _ := strings.Cut(kv, "=")
		out[k] = v
	}
	return out
}

// target is the Dockerfile stage a service built from the repository
// runs, "" for one that runs an image.
func (s composeService) target(t *testing.T, stages []dockerStage) string {
	t.Helper()
	if len(s.Build) == 0 || string(s.Build) == "null" {
		return ""
	}
	var b struct {
		Context, Target, Dockerfile string
	}
	if err := json.Unmarshal(s.Build, &b); err != nil {
		b.Target = "" // the short form: a context, the last stage
	}
	if b.Dockerfile != "" && b.Dockerfile != "Dockerfile" {
		t.Fatalf("built from %s: this test reads the Dockerfile", b.Dockerfile)
	}
	if b.Target == "" {
		return stages[len(stages)-1].name
	}
	return b.Target
}

func (s composeService) healthTest() []string {
	if s.Healthcheck == nil {
		return nil
	}
	var test []string
	if err := json.Unmarshal(s.Healthcheck.Test, &test); err != nil {
		var shell string
		if json.Unmarshal(s.Healthcheck.Test, &shell) == nil && shell != "" {
			test = []string{"CMD-SHELL", shell}
		}
	}
	return test
}

// flag is the value of --name in args, "" if absent.
func flag(args []string, name string) string {
	for i, a := range args {
		if a == name && i+1 < len(args) {
			return args[i+1]
		}
		if v, ok := strings.CutPrefix(a, name+"="); ok {
			return v
		}
	}
	return ""
}

type dockerStage struct {
	name, text string
}

func dockerStages(t *testing.T) []dockerStage {
	t.Helper()
	b, err := os.ReadFile("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`(?m)^FROM\s+\S+(?:\s+AS\s+(\S+))?`)
	idx := re.FindAllSubmatchIndex(b, -1)
	var stages []dockerStage
	for i, m := range idx {
		end := len(b)
		if i+1 < len(idx) {
			end = idx[i+1][0]
		}
		name := fmt.Sprint(i)
		if m[2] >= 0 {
			name = string(b[m[2]:m[3]])
		}
		stages = append(stages, dockerStage{name: name, text: string(b[m[0]:end])})
	}
	if len(stages) == 0 {
		t.Fatal("no stage in the Dockerfile")
	}
	return stages
}

// productionImage reports whether the stage's /payflow is the production
// build (-tags production), following its COPY --from.
func productionImage(t *testing.T, stages []dockerStage, name string) bool {
	t.Helper()
	for _, s := range stages {
		if s.name != name {
			continue
		}
		m := regexp.MustCompile(`(?m)^COPY --from=(\S+) \S+ /payflow$`).FindStringSubmatch(s.text)
		if m == nil {
			t.Fatalf("stage %s copies no /payflow", name)
		}
		for _, from := range stages {
			if from.name == m[1] {
				build := regexp.MustCompile(`(?m)^RUN .*go build .*$`).FindString(from.text)
				if build == "" {
					t.Fatalf("stage %s builds no binary", from.name)
				}
				return regexp.MustCompile(`-tags[ =]production\b`).MatchString(build)
			}
		}
		t.Fatalf("no stage %s", m[1])
	}
	t.Fatalf("no stage %s in the Dockerfile", name)
	return false
}

// devCommands are the payflow commands the production build leaves out
// (cmd/payflow/production.go).
var devCommands = []string{"dev", "demo", "pgsim", "bench", "sim"}

// imagePorts is the port each third-party image's service listens on, as
// configured in docker-compose.yml; its health check must probe it.
var imagePorts = map[string]string{
	"apache/kafka":      "9092",
	"postgres":          "5432",
	"prom/prometheus":   "9090",
	"prom/alertmanager": "9093",
	"grafana/grafana":   "3000",
}

// listenPort is the port a service listens on: a payflow command's
// address flag or PAYFLOW_HTTP_ADDR, or the image's port.
func listenPort(t *testing.T, name string, s composeService) string {
	t.Helper()
	if s.Image != "" {
		repo, _, _ := strings.Cut(s.Image, ":")
		p, ok := imagePorts[repo]
		if !ok {
			t.Fatalf("%s: image %s: say in imagePorts which port its health check must probe", name, s.Image)
		}
		return p
	}
	addr := flag(s.Command, "--addr")
	if addr == "" {
		addr = flag(s.Command, "--http-addr")
	}
	if addr == "" {
		addr = s.env(t)["PAYFLOW_HTTP_ADDR"]
	}
	if addr == "" && len(s.Command) > 0 && s.Command[0] == "serve" {
		addr = ":8080" // serve's default
	}
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("%s: no listen address (%q): %v", name, addr, err)
	}
	return port
}

// Every service has a health check of its own, probing the port it
// listens on: none inherits the image's (the PG simulator inherited
// payflow's, on a port it does not listen on, and was never healthy). A
// service running a dev command runs an image that has it.
func TestComposeHealthChecks(t *testing.T) {
	c := readCompose(t)
	stages := dockerStages(t)
	for name, s := range c.Services {
		test := s.healthTest()
		if len(test) < 2 || test[0] == "NONE" || s.Healthcheck.Disable {
			t.Errorf("%s: no health check of its own (%v)", name, test)
			continue
		}
		port := listenPort(t, name, s)
		target := s.target(t, stages)
		if target == "" {
			if !regexp.MustCompile(`\b` + port + `\b`).MatchString(strings.Join(test[1:], " ")) {
				t.Errorf("%s: health check %v does not probe port %s", name, test, port)
			}
			continue
		}
		prod := productionImage(t, stages, target)
		if len(s.Command) > 0 && slices.Contains(devCommands, s.Command[0]) && prod {
			t.Errorf("%s runs `payflow %s` from target %s, the production build, which leaves it out", name, s.Command[0], target)
		}
		if name == "payflow" && !prod {
			t.Errorf("payflow runs target %s, not the production build", target)
		}
		// The image is distroless: payflow probes itself.
		if test[0] != "CMD" || len(test) < 3 || test[1] != "/payflow" || test[2] != "healthcheck" {
			t.Errorf("%s: health check %v, want /payflow healthcheck", name, test)
			continue
		}
		probe := flag(test, "--url")
		if probe == "" {
			probe = "http://127.0.0.1:8080/healthz" // healthcheck's default
		}
		u, err := url.Parse(probe)
		if err != nil || u.Port() != port {
			t.Errorf("%s listens on %s; its health check probes %s", name, port, probe)
			continue
		}
		switch cmd := s.Command[0]; cmd {
		case "serve":
			if u.Path != "/healthz" && u.Path != "/readyz" {
				t.Errorf("%s: health check probes %s, which serve does not answer", name, u.Path)
			}
		case "pgsim":
			if code := pgsimAnswers(t, u.Path); code != http.StatusOK {
				t.Errorf("%s: health check probes %s, which the simulator answers %d", name, u.Path, code)
			}
		default:
			t.Errorf("%s: say which path `payflow %s` answers healthy", name, cmd)
		}
	}
}

// pgsimAnswers is the status the PG simulator gives a GET of path.
func pgsimAnswers(t *testing.T, path string) int {
	t.Helper()
	sim, err := pgsim.New(pgsim.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	srv := httptest.NewServer(sim.Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// mounts maps a service's mount points to their sources (a named volume,
// or a path on the host relative to the repository).
func mounts(s composeService) map[string]string {
	out := map[string]string{}
	for _, v := range s.Volumes {
		parts := strings.Split(v, ":")
		if len(parts) >= 2 {
			out[parts[1]] = parts[0]
		}
	}
	return out
}

// Kafka and Postgres keep their data in named volumes, so that
// `docker compose down` and `up` (without -v) lose no request or result.
func TestComposeKeepsKafkaAndPostgresData(t *testing.T) {
	c := readCompose(t)
	kafka, pg := c.Services["kafka"], c.Services["postgres"]
	kenv := kafka.env(t)
	dataDirs := map[string]string{"kafka": kenv["KAFKA_LOG_DIRS"], "postgres": "/var/lib/postgresql/data"}
	for name, dir := range dataDirs {
		s := map[string]composeService{"kafka": kafka, "postgres": pg}[name]
		if dir == "" {
			t.Errorf("%s: no data directory set", name)
			continue
		}
		vol, ok := mounts(s)[dir]
		if !ok {
			t.Errorf("%s: nothing mounted at its data directory %s", name, dir)
			continue
		}
		if _, declared := c.Volumes[vol]; !declared || strings.ContainsAny(vol, "./") {
			t.Errorf("%s: %s is mounted from %q, not a named volume declared under volumes", name, dir, vol)
		}
	}
	// A KRaft broker formats its storage with the cluster id; a fixed id
	// lets a restarted container use the volume it formatted.
	if kenv["CLUSTER_ID"] == "" {
		t.Error("kafka: no fixed CLUSTER_ID: the image's default is not promised")
	}
}

// secretName tells an environment variable that carries a secret.
var secretName = regexp.MustCompile(`SECRET|PASSWORD|TOKEN|KEY|^DATABASE_URL$`)

// secretsNeeded are the secrets each service uses; any other it is given
// is one it does not need.
var secretsNeeded = map[string][]string{
	"payflow": {"PAYFLOW_PG_WEBHOOK_SECRET", "PAYFLOW_VAULT_KEY", "PAYFLOW_API_TOKEN", "PAYFLOW_MERCHANT_TOKENS",
		"PAYFLOW_MERCHANT_KEYS", "PAYFLOW_PG_API_KEY", "PAYFLOW_KAFKA_SASL_PASSWORD", "DATABASE_URL"},
	"pgsim":    {"PAYFLOW_PG_WEBHOOK_SECRET", "PAYFLOW_PG_API_KEY"}, // signs webhooks; checks the API key
	"postgres": {"POSTGRES_PASSWORD"},
}

// Each service is given only the secrets it uses (the simulator neither
// the vault key nor the database URL), and those it needs agree: the
// simulator signs with a secret payflow verifies, and payflow's database
// URL carries the password Postgres was given.
func TestComposeSecretsGoOnlyWhereNeeded(t *testing.T) {
	c := readCompose(t)
	userinfo := regexp.MustCompile(`://[^/@:]+:[^/@]+@`)
	for name, s := range c.Services {
		if len(s.EnvFile) > 0 && string(s.EnvFile) != "null" {
			t.Errorf("%s: env_file hides what the service is given", name)
		}
		for k, v := range s.env(t) {
			if (secretName.MatchString(k) || userinfo.MatchString(v)) && !slices.Contains(secretsNeeded[name], k) {
				t.Errorf("%s is given %s, which it does not need", name, k)
			}
		}
		for _, a := range s.Command {
			if strings.HasPrefix(a, "--") && (secretName.MatchString(strings.ToUpper(strings.ReplaceAll(a, "-", "_"))) || userinfo.MatchString(a)) {
				t.Errorf("%s: a secret on the command line (%s) shows in the process list", name, a)
			}
		}
	}
	pf, sim, pg := c.Services["payflow"].env(t), c.Services["pgsim"].env(t), c.Services["postgres"].env(t)
	for _, k := range []string{"PAYFLOW_PG_WEBHOOK_SECRET", "PAYFLOW_VAULT_KEY", "DATABASE_URL"} {
		if pf[k] == "" {
			t.Errorf("payflow is not given %s, which serve needs", k)
		}
	}
	if s := sim["PAYFLOW_PG_WEBHOOK_SECRET"]; s == "" || !slices.Contains(strings.Fields(pf["PAYFLOW_PG_WEBHOOK_SECRET"]), strings.Fields(s)[0]) {
		t.Errorf("the simulator signs with %q, which payflow does not verify (%q)", s, pf["PAYFLOW_PG_WEBHOOK_SECRET"])
	}
	if u, err := url.Parse(pf["DATABASE_URL"]); err != nil || u.Hostname() != "postgres" {
		t.Errorf("payflow's DATABASE_URL does not name the postgres service: %v", err)
	} else if p, _ := u.User.Password(); p != pg["POSTGRES_PASSWORD"] || u.User.Username() != pg["POSTGRES_USER"] {
		t.Error("payflow's DATABASE_URL does not carry the user and password Postgres was given")
	}
}

// Prometheus loads payflow's rules and sends what fires to Alertmanager,
// which routes each severity the rules use to a receiver of its own.
func TestComposeAlertsReachAlertmanager(t *testing.T) {
	c := readCompose(t)
	prom, ok := c.Services["prometheus"]
	if !ok {
		t.Fatal("no prometheus service")
	}
	promMounts := mounts(prom)
	src, ok := promMounts["/etc/prometheus/prometheus.yml"]
	if !ok {
		t.Fatal("prometheus: no configuration mounted at /etc/prometheus/prometheus.yml")
	}
	var cfg struct {
		RuleFiles []string `json:"rule_files"`
		Alerting  struct {
			Alertmanagers []struct {
				StaticConfigs []struct {
					Targets []string `json:"targets"`
				} `json:"static_configs"`
			} `json:"alertmanagers"`
		} `json:"alerting"`
		ScrapeConfigs []struct {
			JobName       string `json:"job_name"`
			StaticConfigs []struct {
				Targets []string `json:"targets"`
			} `json:"static_configs"`
		} `json:"scrape_configs"`
	}
	readYAML(t, src, &cfg)
	rulesMounted := false
	for _, f := range cfg.RuleFiles {
		host, ok := promMounts[f]
		if !ok {
			t.Errorf("prometheus: rule file %s is not mounted", f)
			continue
		}
		if strings.TrimPrefix(host, "./") == "deploy/prometheus/alerts.yml" {
			rulesMounted = true
		}
	}
	if !rulesMounted {
		t.Error("prometheus does not load deploy/prometheus/alerts.yml")
	}
	// Targets name compose services and the ports they listen on.
	checkTarget := func(what, target string) string {
		host, port, err := net.SplitHostPort(target)
		s, ok := c.Services[host]
		if err != nil || !ok {
			t.Errorf("prometheus: %s target %q is not a compose service", what, target)
			return ""
		}
		if p := listenPort(t, host, s); p != port {
			t.Errorf("prometheus: %s target %s, but %s listens on %s", what, target, host, p)
		}
		return host
	}
	var managers []string
	for _, am := range cfg.Alerting.Alertmanagers {
		for _, sc := range am.StaticConfigs {
			for _, target := range sc.Targets {
				managers = append(managers, checkTarget("alertmanager", target))
			}
		}
	}
	if !slices.Contains(managers, "alertmanager") {
		t.Fatalf("prometheus sends alerts to %v, not to the alertmanager service", managers)
	}
	for _, sc := range cfg.ScrapeConfigs {
		for _, s := range sc.StaticConfigs {
			for _, target := range s.Targets {
				checkTarget("scrape", target)
			}
		}
	}

	amSrc, ok := mounts(c.Services["alertmanager"])["/etc/alertmanager/alertmanager.yml"]
	if !ok || strings.TrimPrefix(amSrc, "./") != "deploy/alertmanager/alertmanager.yml" {
		t.Fatalf("alertmanager does not run deploy/alertmanager/alertmanager.yml (%q)", amSrc)
	}
	type route struct {
		Receiver string   `json:"receiver"`
		Matchers []string `json:"matchers"`
		Continue bool     `json:"continue"`
	}
	var am struct {
		Route struct {
			Receiver string  `json:"receiver"`
			Routes   []route `json:"routes"`
		} `json:"route"`
		Receivers []struct {
			Name string `json:"name"`
		} `json:"receivers"`
	}
	readYAML(t, amSrc, &am)
	receivers := map[string]bool{}
	for _, r := range am.Receivers {
		receivers[r.Name] = true
	}
	if !receivers[am.Route.Receiver] {
		t.Errorf("alertmanager: the default receiver %q is not defined", am.Route.Receiver)
	}
	bySeverity := map[string]string{}
	for _, rule := range alertRules(t) {
		sev := rule.Labels["severity"]
		if _, done := bySeverity[sev]; done {
			continue
		}
		bySeverity[sev] = ""
		for _, r := range am.Route.Routes {
			if slices.Contains(r.Matchers, `severity="`+sev+`"`) || slices.Contains(r.Matchers, "severity="+sev) {
				bySeverity[sev] = r.Receiver
				break
			}
		}
		if !receivers[bySeverity[sev]] {
			t.Errorf("alertmanager: severity %q (%s) has no route to a defined receiver (%q)", sev, rule.Alert, bySeverity[sev])
		}
	}
	if bySeverity["page"] != "" && bySeverity["page"] == bySeverity["ticket"] {
		t.Errorf("alertmanager: pages and tickets go to one receiver, %s", bySeverity["page"])
	}
}

// readYAML decodes a file named as compose names it, relative to the
// repository.
func readYAML(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile("../" + strings.TrimPrefix(path, "./"))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}
