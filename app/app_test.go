package app_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/payflow/payflow/app"
	"github.com/payflow/payflow/devenv"
	"github.com/payflow/payflow/events"
	"github.com/payflow/payflow/internal/testdb"
	"github.com/payflow/payflow/pgclient"
	"github.com/payflow/payflow/stdwebhook"
	"github.com/payflow/payflow/vault"
)

// stuckPG holds every bill until released: a PG call that does not come
// back. The calls it does not hold go to a simulator, so it is a fault
// injector around a PG that passes the shared suite, not a PG of its own.
type stuckPG struct {
	pgclient.Client
	release chan struct{}
}

// newStuckPG returns a stuckPG whose bills wait for release.
func newStuckPG() *stuckPG {
	return &stuckPG{Client: app.SimPG(), release: make(chan struct{})}
}

func (p *stuckPG) SendKakaoBill(ctx context.Context, req pgclient.KakaoBillRequest) (pgclient.Accepted, error) {
	select {
	case <-p.release:
		return pgclient.Accepted{BillID: req.BillID, PGTxID: "tx-" + req.BillID}, nil
	case <-ctx.Done():
		return pgclient.Accepted{}, ctx.Err()
	}
}

func (p *stuckPG) AutoPay(ctx context.Context, req pgclient.AutoPayRequest) (pgclient.Accepted, error) {
	return p.SendKakaoBill(ctx, pgclient.KakaoBillRequest{BillID: req.BillID})
}

// logs captures payflow's log output.
type logs struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logs) Write(p []byte) (int, error) { l.mu.Lock(); defer l.mu.Unlock(); return l.buf.Write(p) }
func (l *logs) String() string              { l.mu.Lock(); defer l.mu.Unlock(); return l.buf.String() }

type payflow struct {
	kafka string
	http  string
	logs  *logs
}

// start runs payflow against an embedded broker and a fresh database.
func start(t *testing.T, pg pgclient.Client, tune func(*app.Config)) *payflow {
	t.Helper()
	k, err := devenv.StartKafka("")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(k.Close)
	return startOn(t, k.Addr(), pg, tune)
}

// startOn runs payflow against the broker at addr and a fresh database.
func startOn(t *testing.T, addr string, pg pgclient.Client, tune func(*app.Config)) *payflow {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	out := &logs{}
	cfg := app.Config{
		Brokers: []string{addr}, DatabaseURL: testdb.NewDSN(t), PG: pg, HTTPListener: ln,
		WebhookSecrets: stdwebhook.NewSecret(), VaultKey: vault.GenerateKey(),
		PlatformToken: "platform-token", MerchantTokens: map[string]string{"m": "merchant-token"},
		Partitions: 1, RetryBudget: time.Minute, Lease: 2 * time.Minute,
		Logger: slog.New(slog.NewJSONHandler(out, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	if tune != nil {
		tune(&cfg)
	}
	ready := make(chan struct{})
	cfg.Ready = func() { close(ready) }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- app.Run(ctx, cfg) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("payflow stopped before it was ready: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("payflow not ready after a minute")
	}
	return &payflow{kafka: addr, http: "http://" + ln.Addr().String(), logs: out}
}

func (p *payflow) publish(t *testing.T, msgs ...kafka.Message) {
	t.Helper()
	w := &kafka.Writer{Addr: kafka.TCP(p.kafka), Topic: events.TopicRequests, BatchTimeout: time.Millisecond}
	defer w.Close()
	if err := w.WriteMessages(context.Background(), msgs...); err != nil {
		t.Fatal(err)
	}
}

func (p *payflow) readyz(t *testing.T) (int, string) {
	t.Helper()
	resp, err := http.Get(p.http + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func charge(id, phone string) kafka.Message {
	return kafka.Message{Key: []byte(id), Value: []byte(`{"specversion":"1.0","id":"ev-` + id + `","source":"shop",` +
		`"type":"payment.charge.requested","subject":"` + id + `","time":"2026-11-25T00:00:00.000Z","datacontenttype":"application/json",` +
		`"data":{"merchant_id":"m","charge_id":"` + id + `","amount":15000,"currency":"KRW","order_name":"coffee",` +
		`"customer":{"phone":"` + phone + `","name":"Kim"}}}`)}
}

// A request stuck in flight (here a PG call that does not return) makes
// the process not ready, even though the database and Kafka answer, the
// lag reads low and every other request may flow: the stuck one holds its
// partition's commits. Ready again once it finishes.
func TestReadyzIsFalseWhileARequestIsStuck(t *testing.T) {
	pg := newStuckPG()
	p := start(t, pg, func(c *app.Config) { c.MaxInFlightAge = 500 * time.Millisecond })
	if code, body := p.readyz(t); code != http.StatusOK {
		t.Fatalf("/readyz before any request = %d %s", code, body)
	}
	p.publish(t, charge("c-stuck", "010-1234-5678"))
	eventually(t, "/readyz to report the stuck request", func() bool {
		code, body := p.readyz(t)
		return code == http.StatusServiceUnavailable && strings.Contains(body, "in flight")
	})
	close(pg.release)
	eventually(t, "/readyz to recover", func() bool { code, _ := p.readyz(t); return code == http.StatusOK })
}

// Unparseable requests go to the dead-letter topic whole, but the error
// that names why, in its header and in the log, quotes none of it.
func TestDeadLettersAndLogsCarryNoPersonalData(t *testing.T) {
	const phone, key = "01012345678", "bk_live_7Hq2ZpL9xW"
	p := start(t, newStuckPG(), nil)
	valid := string(charge("c-1", phone).Value)
	bad := []kafka.Message{
		// A NUL byte in the id: Postgres would refuse it for ever.
		{Key: []byte("c-1"), Value: []byte(strings.Replace(valid, `"id":"ev-c-1"`, `"id":"ev-`+phone+`\u0000`+key+`"`, 1))},
		// A time the SDK quoted in its error.
		{Key: []byte("c-2"), Value: []byte(strings.Replace(valid, `"2026-11-25T00:00:00.000Z"`, `"`+phone+`"`, 1))},
		// Not JSON at all.
		{Key: []byte("c-3"), Value: []byte(`{"phone":` + phone + `, "billing_key": ` + key + `}`)},
		// A specversion the SDK quoted.
		{Key: []byte("c-4"), Value: []byte(strings.Replace(valid, `"specversion":"1.0"`, `"specversion":"`+key+`"`, 1))},
	}
	p.publish(t, bad...)
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: []string{p.kafka}, Topic: events.TopicDLQ, Partition: 0, MaxWait: 50 * time.Millisecond})
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for range bad {
		m, err := r.ReadMessage(ctx)
		if err != nil {
			t.Fatalf("reading the dead-letter topic: %v", err)
		}
		found := map[string]string{}
		for _, h := range m.Headers {
			found[h.Key] = string(h.Value)
			if strings.Contains(string(h.Value), phone) || strings.Contains(string(h.Value), key) {
				t.Errorf("dead letter of %s: header %s = %q", m.Key, h.Key, h.Value)
			}
		}
		if !strings.HasPrefix(found["dlq-error"], "unparseable event: ") || found["dlq-source-offset"] == "" {
			t.Errorf("dead letter of %s: headers %v", m.Key, found)
		}
	}
	if out := p.logs.String(); strings.Contains(out, phone) || strings.Contains(out, key) {
		t.Fatalf("the log quotes a request:\n%s", out)
	}
}

// metricsText is the process's /metrics page.
func (p *payflow) metricsText(t *testing.T) string {
	t.Helper()
	resp, err := http.Get(p.http + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return string(body)
}

// Two instances on one database: the database-wide gauges come from the
// instance whose relay leads, and the other has no such series at all, so
// that a sum over replicas counts the backlog once.
func TestOnlyTheLeadingRelayExportsDatabaseGauges(t *testing.T) {
	k, err := devenv.StartKafka("")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(k.Close)
	dsn := testdb.NewDSN(t)
	shared := func(c *app.Config) { c.DatabaseURL = dsn }
	a := startOn(t, k.Addr(), acceptingPG(), shared)
	b := startOn(t, k.Addr(), acceptingPG(), shared)
	exporting := func() (n int, which string) {
		for name, p := range map[string]*payflow{"a": a, "b": b} {
			text := p.metricsText(t)
			has := strings.Contains(text, "\npayflow_outbox_backlog ")
			if has != strings.Contains(text, "\npayflow_charges_stuck{") {
				t.Fatalf("%s exports one database gauge without the other:\n%s", name, text)
			}
			if has {
				n++
				which = name
			}
		}
		return n, which
	}
	eventually(t, "one instance to export the database gauges", func() bool { n, _ := exporting(); return n == 1 })
	_, leader := exporting()
	for range 10 {
		if n, which := exporting(); n != 1 || which != leader {
			t.Fatalf("%d instances export the database gauges (last %s, leader was %s)", n, which, leader)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Without the relay role a process never exports the database gauges.
func TestNoDatabaseGaugesWithoutTheRelay(t *testing.T) {
	p := start(t, acceptingPG(), func(c *app.Config) { c.Roles = app.Roles{Worker: true, HTTP: true} })
	time.Sleep(time.Second)
	if text := p.metricsText(t); strings.Contains(text, "payflow_outbox_backlog") || strings.Contains(text, "payflow_charges_stuck") {
		t.Fatal("a process without the relay exports the database gauges")
	}
}

// Requests fetched but not finished are still lag: the group has not
// committed them. The lag is exported per partition from the group's
// committed offsets, not from what the reader last fetched.
func TestConsumerLagCountsRequestsNotCommitted(t *testing.T) {
	pg := newStuckPG()
	p := start(t, pg, nil)
	p.publish(t, charge("c-1", "010-1234-5678"), charge("c-2", "010-1234-5678"), charge("c-3", "010-1234-5678"))
	eventually(t, "the lag of partition 0 to show the 3 stuck requests", func() bool {
		return strings.Contains(p.metricsText(t), "\npayflow_consumer_lag_messages{partition=\"0\"} 3\n")
	})
	close(pg.release)
	eventually(t, "the lag to drop to 0", func() bool {
		return strings.Contains(p.metricsText(t), "\npayflow_consumer_lag_messages{partition=\"0\"} 0\n")
	})
}

// Two payflows in one process keep their own metrics: a charge handled by
// one is counted by it alone.
func TestEachPayflowCountsOnlyItsOwnWork(t *testing.T) {
	a := start(t, acceptingPG(), nil)
	b := start(t, acceptingPG(), nil)
	a.publish(t, charge("c-metrics", "010-1234-5678"))
	const handled = "payflow_results_total{detail=\"kakao_bill\",type=\"payment.charge.processed\"} 1"
	eventually(t, "a counts its charge", func() bool { return strings.Contains(a.metricsText(t), handled) })
	if text := b.metricsText(t); strings.Contains(text, "payment.charge.processed") || strings.Contains(text, "payflow_pg_call_seconds_count") {
		t.Fatalf("b counts a's charge:\n%s", text)
	}
}
