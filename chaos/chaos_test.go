package chaos_test

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/segmentio/kafka-go"

	"github.com/payflow/payflow/checker"
	"github.com/payflow/payflow/devenv"
	"github.com/payflow/payflow/events"
	"github.com/payflow/payflow/pgclient/pgsim"
	"github.com/payflow/payflow/producer"
	"github.com/payflow/payflow/stdwebhook"
	"github.com/payflow/payflow/store"
	"github.com/payflow/payflow/vault"
)

var (
	kills   = flag.Int("chaos.kills", 20, "SIGKILLs to deliver at least")
	charges = flag.Int("chaos.charges", 1500, "charges to publish")
)

// worker is one `payflow serve` process slot.
type worker struct {
	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when the current process has exited
	args []string
	env  []string
	log  *os.File
}

func (w *worker) start(t *testing.T) {
	w.mu.Lock()
	defer w.mu.Unlock()
	cmd := exec.Command(w.args[0], w.args[1:]...)
	cmd.Env = w.env
	cmd.Stdout, cmd.Stderr = w.log, w.log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	w.cmd, w.done = cmd, done
	go func() { _ = cmd.Wait(); close(done) }()
}

// signal sends sig to the current process and returns it with the channel
// closed when it exits (after which its ProcessState may be read).
func (w *worker) signal(sig syscall.Signal) (*exec.Cmd, chan struct{}) {
	w.mu.Lock()
	defer w.mu.Unlock()
	_ = w.cmd.Process.Signal(sig)
	return w.cmd, w.done
}

func TestKilledWorkersLoseNothingAndChargeNothingTwice(t *testing.T) {
	if testing.Short() {
		t.Skip("chaos run")
	}
	ctx := context.Background()
	dir := t.TempDir()
	bin := filepath.Join(dir, "payflow")
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/payflow").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}

	k, err := devenv.StartKafka("")
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	brokers := []string{k.Addr()}
	if err := producer.EnsureTopics(ctx, brokers, producer.Topics(12)); err != nil {
		t.Fatal(err)
	}
	// A server of its own, so it can be restarted mid-run without
	// disturbing other tests.
	pgServer, err := devenv.StartLocalPostgres(ctx, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer pgServer.Close()
	dsn := pgServer.DSN()
	if err := store.Migrate(ctx, dsn); err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()

	// Each worker slot keeps its HTTP port across restarts; the PG's
	// webhooks go through a proxy to whichever worker is alive.
	ports := make([]int, 3)
	for i := range ports {
		l, _ := net.Listen("tcp", "127.0.0.1:0")
		ports[i] = l.Addr().(*net.TCPAddr).Port
		l.Close()
	}
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		for _, p := range ports {
			req, _ := http.NewRequest(http.MethodPost, fmt.Sprintf("http://127.0.0.1:%d%s", p, r.URL.Path), bytes.NewReader(body))
			req.Header = r.Header.Clone()
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				continue
			}
			w.WriteHeader(resp.StatusCode)
			_, _ = io.Copy(w, resp.Body)
			resp.Body.Close()
			return
		}
		w.WriteHeader(http.StatusBadGateway)
	}))
	defer proxy.Close()
	secret := stdwebhook.NewSecret()

	// A PG that fails: 5 % outages, 3 % timeouts after charging, 20 % of
	// its webhooks lost (reconciliation must settle those bills).
	sim, err := pgsim.New(pgsim.Config{Latency: 5 * time.Millisecond, ErrorRate: 0.05, TimeoutRate: 0.03,
		TimeoutHold: 3 * time.Second, SettleDelay: 300 * time.Millisecond, KakaoPayDelay: 600 * time.Millisecond,
		CallbackURL: proxy.URL + "/webhooks/pg/sim", WebhookSecret: secret, WebhookDropRate: 0.2, WebhookMaxElapsed: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	simSrv := httptest.NewServer(sim.Handler())
	defer simSrv.Close()

	// Members with stored methods, a fifth of them declined cards.
	vaultKey := vault.GenerateKey()
	v, _ := vault.New(vaultKey)
	for i := 0; i < 50; i++ {
		key := fmt.Sprintf("bk_%d", i)
		if i%5 == 0 {
			key = "decline_" + key
		}
		id := uuid.NewString()
		sealed, _ := v.Seal([]byte(key), []byte(id))
		if _, err := st.AddMethod(ctx, store.Method{ID: id, MemberID: fmt.Sprint("member-", i), Label: "card", BillingKeyEnc: sealed}); err != nil {
			t.Fatal(err)
		}
	}

	env := append(os.Environ(), "PAYFLOW_PG_WEBHOOK_SECRET="+secret, "PAYFLOW_VAULT_KEY="+vaultKey,
		"PAYFLOW_API_TOKEN=p", "PAYFLOW_MERCHANT_TOKENS=m:t")
	workers := make([]*worker, 3)
	for i := range workers {
		f, _ := os.Create(filepath.Join(dir, fmt.Sprintf("worker-%d.log", i)))
		defer f.Close()
		workers[i] = &worker{log: f, env: env, args: []string{bin, "serve", "--brokers", k.Addr(), "--database-url", dsn,
			"--pg-url", simSrv.URL, "--http-addr", fmt.Sprintf("127.0.0.1:%d", ports[i]), "--lease", "5s", "--pg-retry-budget", "2s",
			"--pg-timeout", "1s", "--sweep-interval", "1s", "--session-timeout", "6s", "--log-format", "text",
			"--reconcile-age", "3s", "--reconcile-interval", "1s"}}
		workers[i].start(t)
	}

	// Publish charges at a steady pace; a fifth of them twice (a producer
	// retry), a few invalid.
	w := &kafka.Writer{Addr: kafka.TCP(brokers...), Topic: events.TopicRequests, Balancer: &kafka.Hash{}, BatchTimeout: time.Millisecond}
	defer w.Close()
	published := make(chan struct{})
	go func() {
		defer close(published)
		for i := 0; i < *charges; i++ {
			id := fmt.Sprint("chaos-", i)
			cust := map[string]any{"phone": "010-1234-5678", "name": "n"}
			if i%2 == 0 {
				cust["member_id"] = fmt.Sprint("member-", i%50)
			}
			b, _ := json.Marshal(map[string]any{"specversion": "1.0", "id": uuid.NewString(), "source": "chaos",
				"type": events.TypeChargeRequested, "datacontenttype": "application/json",
				"data": map[string]any{"merchant_id": "m", "charge_id": id, "amount": 1000 + i, "currency": "KRW", "order_name": "o", "customer": cust}})
			msgs := []kafka.Message{{Key: []byte(id), Value: b}}
			if i%5 == 0 {
				msgs = append(msgs, msgs[0])
			}
			if err := w.WriteMessages(ctx, msgs...); err != nil {
				t.Error(err)
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	}()

	// Kill at random moments until enough kills and everything published;
	// halfway, restart the database under the workers' feet.
	delivered, restarted := 0, false
	for delivered < *kills || !closed(published) {
		if !restarted && delivered == *kills/2 {
			if err := pgServer.Restart(); err != nil {
				t.Fatal(err)
			}
			restarted = true
			t.Log("postgres restarted")
		}
		time.Sleep(time.Duration(200+rand.IntN(600)) * time.Millisecond)
		wk := workers[rand.IntN(len(workers))]
		wk.signal(syscall.SIGKILL)
		delivered++
		time.Sleep(time.Duration(rand.IntN(300)) * time.Millisecond)
		wk.start(t)
	}
	t.Logf("%d SIGKILLs delivered", delivered)

	// Let the survivors finish: every charge stored, none placing, every
	// placed bill settled (by webhook or, for the lost ones, by
	// reconciliation), the outbox drained. (The test's pool reconnects
	// after the restart.)
	deadline := time.Now().Add(3 * time.Minute)
	for {
		var n, open, unpublished int
		_ = st.Pool.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE state IN ('placing', 'requested')),
			(SELECT count(*) FROM outbox WHERE published_at IS NULL) FROM charges`).Scan(&n, &open, &unpublished)
		if n == *charges && open == 0 && unpublished == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not settled in time: %d/%d charges, %d placing or awaiting settlement, %d unpublished", n, *charges, open, unpublished)
		}
		time.Sleep(500 * time.Millisecond)
	}

	// Graceful shutdown on SIGTERM, within a bound.
	for _, wk := range workers {
		cmd, done := wk.signal(syscall.SIGTERM)
		select {
		case <-done:
			if !cmd.ProcessState.Success() {
				b, _ := os.ReadFile(wk.log.Name())
				lines := strings.Split(strings.TrimSpace(string(b)), "\n")
				t.Errorf("worker exited with %v after SIGTERM; its last lines:\n%s", cmd.ProcessState, strings.Join(lines[max(0, len(lines)-8):], "\n"))
			}
		case <-time.After(30 * time.Second):
			t.Error("worker did not exit within 30 s of SIGTERM")
		}
	}

	ledger := sim.Ledger()
	entries := make([]checker.LedgerEntry, len(ledger))
	for i, e := range ledger {
		entries[i] = checker.LedgerEntry{Op: e.Op, BillID: e.BillID, RefundID: e.RefundID, Amount: e.Amount, Outcome: e.Outcome}
	}
	topic, err := checker.ReadTopic(ctx, brokers, events.TopicEvents)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := checker.Check(ctx, st.Pool, entries, topic)
	if err != nil {
		t.Fatal(err)
	}
	faults := 0
	for _, e := range ledger {
		if e.Outcome == "duplicate" {
			faults++
		}
	}
	var paid int
	_ = st.Pool.QueryRow(ctx, `SELECT count(*) FROM charges WHERE state = 'paid'`).Scan(&paid)
	t.Logf("checked %d charges (%d paid), %d bills, %d events; %d PG calls (%d auto-pay, %d KakaoTalk); %d violations",
		rep.Charges, paid, rep.Bills, rep.Published, len(ledger), sim.Calls(pgsim.OpAutoPay), sim.Calls(pgsim.OpKakaoBill), len(rep.Violations))
	if !rep.OK() {
		t.Fatalf("violations:\n%s", strings.Join(rep.Violations, "\n"))
	}
	if delivered < *kills {
		t.Fatalf("only %d kills", delivered)
	}
}

func closed(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}
