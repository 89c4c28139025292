package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"
)

// productionTag is the build tag of the production binary (the Dockerfile's
// image).
const productionTag = "production"

// devTooling is what the production binary must not link: the embedded
// broker, the container client behind the throwaway Postgres, the PG
// simulator, the simulation, the benchmark and the no-setup environment.
// Each is a package path, matched with everything under it.
var devTooling = []string{
	"github.com/twmb/franz-go/pkg/kfake",
	"github.com/testcontainers/testcontainers-go",
	"github.com/moby/moby/client",
	"github.com/docker/go-connections",
	"github.com/payflow/payflow/pgclient/pgsim",
	"github.com/payflow/payflow/sim",
	"github.com/payflow/payflow/bench",
	"github.com/payflow/payflow/devenv",
}

// devCommands are the commands the production build leaves out.
var devCommands = []string{"dev", "demo", "pgsim", "bench", "sim"}

func goTool(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	p := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("no go command on PATH or in GOROOT: %v", err)
	}
	return p
}

// deps lists the packages the payflow binary links, built with tags.
func deps(t *testing.T, tags string) []string {
	t.Helper()
	args := []string{"list", "-deps"}
	if tags != "" {
		args = append(args, "-tags", tags)
	}
	cmd := exec.Command(goTool(t), append(args, ".")...)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return strings.Fields(string(out))
}

func linked(pkgs []string, path string) []string {
	var out []string
	for _, p := range pkgs {
		if p == path || strings.HasPrefix(p, path+"/") {
			out = append(out, p)
		}
	}
	return out
}

// The production build links none of the dev tooling. The same check on
// the default build must find each of them, or it could not see them.
func TestProductionBuildLinksNoDevTooling(t *testing.T) {
	prod, dev := deps(t, productionTag), deps(t, "")
	if !slices.Contains(prod, "github.com/payflow/payflow/app") {
		t.Fatalf("the production build does not link the app: %d packages", len(prod))
	}
	for _, path := range devTooling {
		if got := linked(prod, path); len(got) > 0 {
			t.Errorf("the production build links %s: %v", path, got)
		}
		if len(linked(dev, path)) == 0 {
			t.Errorf("the default build links no %s: the check does not see what it looks for", path)
		}
	}
	t.Logf("packages linked: %d in the default build, %d in the production build", len(dev), len(prod))
}

// The Dockerfile's image is the production build.
func TestDockerfileBuildsTheProductionBinary(t *testing.T) {
	b, err := os.ReadFile("../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	// The last stage is the image `docker build .` makes; the binary it
	// copies must come from a stage that builds with the tag.
	stages := regexp.MustCompile(`(?m)^FROM\s+\S+(?:\s+AS\s+(\S+))?`).FindAllStringSubmatchIndex(string(b), -1)
	if len(stages) < 2 {
		t.Fatalf("the Dockerfile has %d stages", len(stages))
	}
	last := string(b[stages[len(stages)-1][0]:])
	m := regexp.MustCompile(`(?m)^COPY --from=(\S+) \S+ /payflow$`).FindStringSubmatch(last)
	if m == nil {
		t.Fatalf("the image's stage copies no /payflow:\n%s", last)
	}
	var from string
	for i, s := range stages {
		if s[2] >= 0 && string(b[s[2]:s[3]]) == m[1] {
			end := len(b)
			if i+1 < len(stages) {
				end = stages[i+1][0]
			}
			from = string(b[s[0]:end])
		}
	}
	if from == "" {
		t.Fatalf("no stage %s", m[1])
	}
	build := regexp.MustCompile(`(?m)^RUN .*go build .*$`).FindString(from)
	if !regexp.MustCompile(`-tags[ =]` + productionTag + `\b`).MatchString(build) {
		t.Fatalf("the image's binary is built by %q, without -tags %s", build, productionTag)
	}
}

// The production binary builds, keeps every command but the dev tooling,
// and answers a left-out command with a usage error that says why.
func TestProductionBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := filepath.Join(t.TempDir(), "payflow")
	build := exec.Command(goTool(t), "build", "-tags", productionTag, "-trimpath", "-ldflags=-s -w", "-o", bin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build -tags %s: %v\n%s", productionTag, err, out)
	}
	if fi, err := os.Stat(bin); err == nil {
		t.Logf("production binary: %.1f MB", float64(fi.Size())/1e6)
	}
	runBin := func(args ...string) (string, int) {
		cmd := exec.Command(bin, args...)
		cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
		out, err := cmd.CombinedOutput()
		var exit *exec.ExitError
		switch {
		case err == nil:
			return string(out), 0
		case errors.As(err, &exit):
			return string(out), exit.ExitCode()
		}
		t.Fatalf("payflow %v: %v", args, err)
		return "", -1
	}

	help, code := runBin("--help")
	if code != 0 {
		t.Fatalf("--help: exit %d: %s", code, help)
	}
	listed := map[string]bool{}
	inList := false
	for _, line := range strings.Split(help, "\n") {
		switch {
		case strings.HasPrefix(line, "Available Commands:"):
			inList = true
		case inList && strings.HasPrefix(line, "  "):
			listed[strings.Fields(line)[0]] = true
		case inList:
			inList = false
		}
	}
	for _, c := range rootCmd().Commands() {
		name := c.Name()
		if slices.Contains(devCommands, name) {
			if listed[name] {
				t.Errorf("the production build lists %s", name)
			}
			out, code := runBin(name, "--help")
			if code != 2 || !strings.Contains(out, "left out of the production build") {
				t.Errorf("%s in the production build: exit %d, want 2 saying it is left out: %s", name, code, out)
			}
			continue
		}
		if !listed[name] && !c.Hidden {
			t.Errorf("the production build lacks %s:\n%s", name, help)
		}
	}
	var all []string
	for _, c := range rootCmd().Commands() {
		all = append(all, c.Name())
	}
	for _, name := range devCommands {
		if !slices.Contains(all, name) {
			t.Errorf("the default build has no %s: %v", name, all)
		}
	}
	if out, code := runBin("serve"); code != 2 || !strings.Contains(out, "PAYFLOW_KAFKA_BROKERS") {
		t.Errorf("serve without configuration: exit %d, want 2 naming what is missing: %s", code, out)
	}
	if out, code := runBin("version"); code != 0 || !strings.HasPrefix(out, "payflow ") {
		t.Errorf("version: exit %d: %s", code, out)
	}
}
