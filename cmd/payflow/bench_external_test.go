//go:build !production

package main

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/payflow/payflow/bench"
	"github.com/payflow/payflow/internal/testdb"
	"github.com/payflow/payflow/stdwebhook"
	"github.com/payflow/payflow/vault"
)

// Every external-mode mistake is a usage error (exit 2) found before
// anything starts, and names what is wrong.
func TestBenchExternalOptionsAreCheckedUpFront(t *testing.T) {
	t.Setenv("PAYFLOW_PG_URL", "")
	full := []string{"bench", "--brokers", "127.0.0.1:1", "--api-url", "http://127.0.0.1:2", "--pg-url", "http://127.0.0.1:3"}
	for _, c := range []struct {
		name, token, dsn string
		args             []string
		want             string
	}{
		{"api url without token", "", "postgres://db", full, "PAYFLOW_API_TOKEN"},
		{"no database", "pt", "", full, "DATABASE_URL"},
		{"no simulator", "pt", "postgres://db", []string{"bench", "--brokers", "127.0.0.1:1", "--api-url", "http://127.0.0.1:2"}, "--pg-url"},
		{"members but no api", "pt", "postgres://db", []string{"bench", "--brokers", "127.0.0.1:1", "--pg-url", "http://127.0.0.1:3"}, "--api-url to register its 3500 members"},
		{"external flag without brokers", "pt", "postgres://db", []string{"bench", "--api-url", "http://127.0.0.1:2"}, "--brokers"},
		{"empty brokers", "pt", "postgres://db", []string{"bench", "--brokers", " , ", "--api-url", "http://127.0.0.1:2", "--pg-url", "http://127.0.0.1:3"}, "names no broker"},
		{"own stack flag", "pt", "postgres://db", append(full, "--worker-process"), "--worker-process configures the stack bench starts itself"},
		{"pg latency", "pt", "postgres://db", append(full, "--pg-latency", "1ms"), "--pg-latency"},
		{"not a url", "pt", "postgres://db", append(full, "--metrics-url", "127.0.0.1:2/metrics"), "--metrics-url"},
		{"kafka security without brokers", "pt", "postgres://db", []string{"bench", "--kafka-tls"}, "--kafka-tls targets a running payflow"},
		{"topic without brokers", "pt", "postgres://db", []string{"bench", "--topic-events", "x.out"}, "--topic-events targets a running payflow"},
		{"unknown sasl mechanism", "pt", "postgres://db", append(full, "--kafka-sasl-mechanism", "GSSAPI"), "GSSAPI"},
		{"bad topic", "pt", "postgres://db", append(full, "--topic-events", "no spaces"), "no spaces"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Setenv("PAYFLOW_API_TOKEN", c.token)
			t.Setenv("DATABASE_URL", c.dsn)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			out, code := runPayflow(ctx, c.args...)
			if code != 2 || !strings.Contains(out, c.want) {
				t.Fatalf("exit %d, want 2 naming %q: %s", code, c.want, out)
			}
		})
	}
	// With no members to register, the API is not needed.
	cmd := benchCmd()
	if err := cmd.ParseFlags([]string{"--brokers", "127.0.0.1:1", "--member-rate", "0"}); err != nil {
		t.Fatal(err)
	}
	e := externalTarget{brokers: "127.0.0.1:1", pgURL: "http://127.0.0.1:3", databaseURL: "postgres://db"}
	if err := e.validate(cmd.Flags(), bench.Workload{Customers: 5000, MemberRate: 0}); err != nil {
		t.Fatalf("--member-rate 0 without --api-url: %v", err)
	}
}

// The external target publishes to the given brokers, reads the metrics
// next to the API unless told otherwise, and registers each member through
// serve's payment-method API with the platform token.
func TestBenchExternalTarget(t *testing.T) {
	var mu sync.Mutex
	var got []string
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = append(got, r.Method+" "+r.URL.Path+" "+r.Header.Get("Authorization"))
		mu.Unlock()
		if r.Header.Get("Authorization") != "Bearer pt_secret" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.WriteHeader(http.StatusCreated)
	}))
	defer api.Close()
	cmd := benchCmd()
	if err := cmd.ParseFlags([]string{"--brokers", "a:9092, b:9092", "--api-url", api.URL + "/"}); err != nil {
		t.Fatal(err)
	}
	e := externalTarget{brokers: "a:9092, b:9092", apiURL: api.URL + "/", pgURL: "http://sim:8090", databaseURL: "postgres://db", token: "pt_secret"}
	if err := e.validate(cmd.Flags(), bench.W1); err != nil {
		t.Fatal(err)
	}
	tg := e.target()
	if strings.Join(tg.Brokers, " ") != "a:9092 b:9092" || tg.DatabaseURL != "postgres://db" || tg.MetricsURL != api.URL+"/metrics" {
		t.Fatalf("target: %+v", tg)
	}
	if err := tg.RegisterMember(context.Background(), "m-1"); err != nil {
		t.Fatal(err)
	}
	if want := "POST /v1/members/m-1/payment-methods Bearer pt_secret"; len(got) != 1 || got[0] != want {
		t.Fatalf("API calls %q, want %q", got, want)
	}
	e.token = "pt_wrong"
	if err := e.target().RegisterMember(context.Background(), "m-2"); err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("a refused registration: %v", err)
	}
}

// syncBuffer is a bytes.Buffer a command writes while the test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startCommand runs the payflow command line in the background until the
// test ends, and returns its output so far as it grows.
func startCommand(t *testing.T, ctx context.Context, args ...string) *syncBuffer {
	t.Helper()
	ctx, stop := context.WithCancel(ctx)
	out := &syncBuffer{}
	root := rootCmd()
	root.SetOut(out)
	root.SetErr(out)
	root.SetArgs(args)
	done := make(chan error, 1)
	go func() { done <- root.ExecuteContext(ctx) }()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("%v: %v", args, err)
		}
	})
	return out
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// The three-command recipe of docs/benchmarks.md, in this process but
// through the same command lines: the broker alone (dev --only broker),
// the simulator alone (pgsim, settling as it does by default), serve, and
// then bench driving them from outside with a small workload. Every charge
// gets its one result, members are registered through serve's API (so the
// members' charges go by auto-pay), serve's metrics are read, and the
// invariant check is clean.
func TestBenchDrivesARunningPayflow(t *testing.T) {
	if testing.Short() {
		t.Skip("end to end")
	}
	ctx := benchEnv(t)
	broker := startCommand(t, ctx, "dev", "--only", "broker", "--kafka-addr", "127.0.0.1:0")
	bootstrap := regexp.MustCompile(`kafka bootstrap\s+(\S+)`)
	var brokers string
	for deadline := time.Now().Add(30 * time.Second); brokers == ""; time.Sleep(20 * time.Millisecond) {
		if m := bootstrap.FindStringSubmatch(broker.String()); m != nil {
			brokers = m[1]
		} else if time.Now().After(deadline) {
			t.Fatalf("dev --only broker printed no bootstrap address: %s", broker.String())
		}
	}
	driveRunningPayflow(t, ctx, brokers, nil)
}

// A payflow whose brokers require TLS and SASL, with its topics renamed, is
// driven the same way: bench reaches the brokers with the flags serve takes.
func TestBenchDrivesASecuredPayflow(t *testing.T) {
	if testing.Short() {
		t.Skip("end to end")
	}
	ctx := benchEnv(t)
	k, ca, _, topics := securedBroker(t, "SCRAM-SHA-256", "bench", "bench-secret")
	t.Setenv("PAYFLOW_KAFKA_SASL_PASSWORD", "bench-secret")
	driveRunningPayflow(t, ctx, k.Addr(), []string{"--kafka-tls", "--kafka-tls-ca", ca,
		"--kafka-sasl-mechanism", "SCRAM-SHA-256", "--kafka-sasl-username", "bench",
		"--topic-requests", topics.Requests, "--topic-events", topics.Events, "--topic-dlq", topics.DLQ})
}

// benchEnv sets the environment of a payflow under test and returns a
// context cancelled after the commands' own cleanups, which stop them in
// reverse order: serve before the simulator and the broker.
func benchEnv(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	for k, v := range map[string]string{
		"DATABASE_URL": testdb.NewDSN(t), "PAYFLOW_API_TOKEN": "pt_bench_" + randomHex(8),
		"PAYFLOW_PG_WEBHOOK_SECRET": stdwebhook.NewSecret(), "PAYFLOW_VAULT_KEY": vault.GenerateKey(),
		"PAYFLOW_MERCHANT_TOKENS": "", "PAYFLOW_PG_URL": "", "PAYFLOW_KAFKA_BROKERS": "", "PAYFLOW_HTTP_ADDR": "",
	} {
		t.Setenv(k, v)
	}
	return ctx
}

// driveRunningPayflow starts the simulator and serve on brokers, with
// kafkaArgs given to both serve and bench, and runs bench against them.
func driveRunningPayflow(t *testing.T, ctx context.Context, brokers string, kafkaArgs []string) {
	t.Helper()
	apiURL, simURL := "http://"+freeAddr(t), "http://"+freeAddr(t)
	startCommand(t, ctx, "pgsim", "--addr", strings.TrimPrefix(simURL, "http://"), "--latency", "5ms",
		"--callback-url", apiURL+"/webhooks/pg/sim")
	serve := startCommand(t, ctx, append([]string{"serve", "--brokers", brokers, "--pg-url", simURL,
		"--http-addr", strings.TrimPrefix(apiURL, "http://"), "--log-format", "text"}, kafkaArgs...)...)
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(100 * time.Millisecond) {
		if resp, err := http.Get(apiURL + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve not ready after a minute: %s", serve.String())
		}
	}

	out, code := runPayflow(ctx, append([]string{"bench", "--brokers", brokers, "--api-url", apiURL, "--pg-url", simURL,
		"--charges", "50", "--customers", "20", "--ceiling-clients", "0", "--timeout", "60s"}, kafkaArgs...)...)
	if code != 0 {
		t.Fatalf("bench: exit %d:\n%s", code, out)
	}
	// 20 customers, 14 of them members: charges i%20 < 14 go by auto-pay.
	for _, want := range []string{
		"results           50 of 50 (missing 0, duplicates 0, failed 0, rejected 0)",
		"by method         map[auto_pay:38 kakao_bill:12]",
		"relay lag         p50", "group commit      mean batch",
		": 0 violations",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("bench output lacks %q:\n%s", want, out)
		}
	}
}
