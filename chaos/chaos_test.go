package chaos_test

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/segmentio/kafka-go"

	"github.com/payflow/payflow/checker"
	"github.com/payflow/payflow/devenv"
	"github.com/payflow/payflow/events"
	"github.com/payflow/payflow/payflow"
	"github.com/payflow/payflow/pgclient/payssam"
	"github.com/payflow/payflow/pgclient/pgsim"
	"github.com/payflow/payflow/producer"
	"github.com/payflow/payflow/stdwebhook"
	"github.com/payflow/payflow/store"
	"github.com/payflow/payflow/vault"
)

var (
	kills   = flag.Int("chaos.kills", 20, "SIGKILLs to deliver at least")
	charges = flag.Int("chaos.charges", 1500, "charges to publish")
	keep    = flag.String("chaos.keep", "", "directory to copy the workers' logs into at the end")
	pgProto = flag.String("chaos.pg", "sim", "the PG protocol: sim, or payssam (the PaySSam adapter against the simulator in PaySSam mode)")
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

// supervise restarts, as a process supervisor would, a worker that exited
// on its own: serve refuses to start while Postgres is restarting (it
// fails fast, SQLSTATE 57P03, and its supervisor starts it again). Any
// other exit of its own is an error of the run.
func supervise(t *testing.T, workers []*worker) {
	t.Helper()
	for i, wk := range workers {
		wk.mu.Lock()
		cmd, exited := wk.cmd, closed(wk.done)
		wk.mu.Unlock()
		if !exited {
			continue
		}
		state := cmd.ProcessState // set before done closed
		b, _ := os.ReadFile(wk.log.Name())
		lines := strings.Split(strings.TrimSpace(string(b)), "\n")
		last := lines[len(lines)-1]
		if strings.Contains(last, "SQLSTATE 57P03") {
			t.Logf("worker %d did not start while Postgres restarted (%v); started again", i, state)
		} else {
			t.Errorf("worker %d exited on its own with %v; its last lines:\n%s", i, state, strings.Join(lines[max(0, len(lines)-8):], "\n"))
		}
		wk.start(t)
	}
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
	simCfg := pgsim.Config{Latency: 5 * time.Millisecond, ErrorRate: 0.05, TimeoutRate: 0.03,
		TimeoutHold: 3 * time.Second, SettleDelay: 300 * time.Millisecond, KakaoPayDelay: 600 * time.Millisecond,
		CallbackURL: proxy.URL + "/webhooks/pg/sim", WebhookSecret: secret, WebhookDropRate: 0.2, WebhookMaxElapsed: 20 * time.Second}
	if *pgProto == "payssam" {
		// PaySSam's unsigned callbacks, paid bills only; partial refunds
		// are refused not_supported.
		simCfg.Protocol, simCfg.CallbackURL = pgsim.ProtocolPaySSam, proxy.URL+"/webhooks/pg/payssam"
		simCfg.APIKey, simCfg.PaySSamMember, simCfg.PaySSamStores = "ps_chaos_key", "chaosmember", []string{"CHAOSSTORE"}
	}
	sim, err := pgsim.New(simCfg)
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
		if _, err := st.AddMethod(ctx, payflow.PaymentMethod{ID: id, MemberID: fmt.Sprint("member-", i), Label: "card", BillingKeyEnc: sealed}); err != nil {
			t.Fatal(err)
		}
	}

	env := append(os.Environ(), "PAYFLOW_PG_WEBHOOK_SECRET="+secret, "PAYFLOW_VAULT_KEY="+vaultKey,
		"PAYFLOW_API_TOKEN=p", "PAYFLOW_MERCHANT_TOKENS=m:t")
	if *pgProto == "payssam" {
		env = append(env, "PAYFLOW_PG_PROVIDER=payssam", "PAYFLOW_PAYSSAM_URL="+simSrv.URL, "PAYFLOW_PAYSSAM_API_KEY=ps_chaos_key",
			"PAYFLOW_PAYSSAM_MEMBER=chaosmember", "PAYFLOW_PAYSSAM_MERCHANTS=m:CHAOSSTORE",
			"PAYFLOW_PAYSSAM_CALLBACK_URL="+proxy.URL+"/webhooks/pg/payssam")
	}
	// Sized by the connection budget (docs/operations.md), as the Helm
	// chart sizes its pods: each serve opens its whole pool at start, and
	// three of them with the default 32 (+1 for the relay's lock) would
	// take all of a default server's 100 connections.
	workers := make([]*worker, 3)
	for i := range workers {
		f, _ := os.Create(filepath.Join(dir, fmt.Sprintf("worker-%d.log", i)))
		defer f.Close()
		workers[i] = &worker{log: f, env: env, args: []string{bin, "serve", "--brokers", k.Addr(), "--database-url", dsn,
			"--pg-url", simSrv.URL, "--db-max-conns", "8", "--http-addr", fmt.Sprintf("127.0.0.1:%d", ports[i]), "--lease", "5s", "--pg-retry-budget", "2s",
			"--pg-timeout", "1s", "--sweep-interval", "1s", "--session-timeout", "6s", "--log-format", "text",
			"--reconcile-age", "3s", "--reconcile-interval", "1s"}}
		workers[i].start(t)
	}

	logs := make([]string, len(workers))
	for i, wk := range workers {
		logs[i] = wk.log.Name()
	}
	if *keep != "" {
		defer func() {
			for _, name := range logs {
				if b, err := os.ReadFile(name); err == nil && os.MkdirAll(*keep, 0o755) == nil {
					_ = os.WriteFile(filepath.Join(*keep, filepath.Base(name)), b, 0o644)
				}
			}
			t.Logf("worker logs copied to %s", *keep)
		}()
	}

	// Publish charges at a steady pace; a fifth of them twice (a producer
	// retry). On the same key, behind some charges, the requests that act
	// on them (see workload): a cancel right behind the charge, so that it
	// arrives while the bill is still being placed; refunds and
	// re-payments later, from their own goroutine, so that they
	// interleave with the kills and the database restart.
	w := &kafka.Writer{Addr: kafka.TCP(brokers...), Topic: events.TopicRequests, Balancer: &kafka.Hash{}, BatchTimeout: time.Millisecond}
	defer w.Close()
	published := make(chan struct{})
	later := make(chan followUp, *charges)
	var secondRepays sync.Map // event id of a second re-payment → the first's repay id
	go func() {
		defer close(published)
		defer close(later)
		n := 0
		for i := 0; i < *charges; i++ {
			id := fmt.Sprint("chaos-", i)
			cust := map[string]any{"phone": "010-1234-5678", "name": "n"}
			if i%2 == 0 {
				cust["member_id"] = fmt.Sprint("member-", i%50)
			}
			msgs := request(id, events.TypeChargeRequested, 0,
				map[string]any{"merchant_id": "m", "charge_id": id, "amount": 1000 + i, "currency": "KRW", "order_name": "o", "customer": cust})
			if i%5 == 0 {
				msgs = append(msgs, msgs[0])
			}
			now, follow := workload(i, id, &secondRepays)
			msgs = append(msgs, now...)
			if err := w.WriteMessages(ctx, msgs...); err != nil {
				t.Error(err)
				return
			}
			if len(follow) > 0 {
				// Half of them after a few seconds, racing the
				// settlement; half once the charge has settled, so
				// that most of those find it paid.
				n++
				f := followUp{chargeID: id, msgs: follow, at: time.Now().Add(time.Duration(1000+rand.IntN(3000)) * time.Millisecond)}
				if n%2 == 0 {
					f.at, f.settled = time.Now().Add(time.Duration(rand.IntN(1000))*time.Millisecond), true
				}
				later <- f
			}
			time.Sleep(10 * time.Millisecond)
		}
	}()
	followed := make(chan struct{})
	go func() {
		defer close(followed)
		if err := publishLater(ctx, w, st, later); err != nil {
			t.Error(err)
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
		supervise(t, workers)
	}
	t.Logf("%d SIGKILLs delivered", delivered)
	<-followed

	// Let the survivors finish: every request handled (the group's
	// committed offsets at the end of the topic), every charge stored,
	// none placing, every placed bill settled (by webhook or, for the lost
	// ones, by reconciliation), no refund pending, the outbox drained.
	// (The test's pool reconnects after the restart.)
	//
	// A process that lost a partition in a rebalance still commits its own
	// position there once its last message finishes, which can set the
	// group's offset back below messages its successor handled and
	// committed. With nothing more to read on that partition the
	// successor never commits again, so when everything else is quiet and
	// the offsets have not moved for 5 s, the run publishes one more
	// request on each such partition (a cancel of an unknown charge, to be
	// rejected) and its owner commits past it. A message really stuck is
	// not passed that way: the offset stays below it.
	deadline := time.Now().Add(3 * time.Minute)
	var last map[int]int64
	still, nudges := time.Now(), 0
	for {
		supervise(t, workers)
		var n, open, pending, unpublished int
		_ = st.Pool.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE state IN ('placing', 'requested')),
			(SELECT count(*) FROM refunds WHERE status = 'pending'),
			(SELECT count(*) FROM outbox WHERE published_at IS NULL) FROM charges`).Scan(&n, &open, &pending, &unpublished)
		quiet := n == *charges && open == 0 && pending == 0 && unpublished == 0
		committed, lagging, behind, err := unhandled(ctx, k.Addr())
		if err == nil && behind == 0 && quiet {
			break
		}
		if !maps.Equal(committed, last) {
			last, still = committed, time.Now()
		}
		if err == nil && quiet && time.Since(still) > 5*time.Second && nudges < 3 {
			nudges++
			t.Logf("%d requests handled but not committed on partitions %v while all is quiet; nudging them", behind, lagging)
			if err := w.WriteMessages(ctx, nudge(lagging, nudges)...); err != nil {
				t.Fatal(err)
			}
			still = time.Now()
		}
		if time.Now().After(deadline) {
			t.Fatalf("not settled in time: %d/%d charges, %d placing or awaiting settlement, %d refunds pending, %d unpublished, %d requests not handled (%v)\n%s",
				n, *charges, open, pending, unpublished, behind, err, stuck(ctx, brokers, committed, logs))
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
	// PaySSam's ledger names bills by PaySSam's ids: the checker speaks
	// payflow's.
	ours := map[string]string{}
	if *pgProto == "payssam" {
		rows, err := st.Pool.Query(ctx, `SELECT bill_id FROM bills`)
		if err != nil {
			t.Fatal(err)
		}
		ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		for _, id := range ids {
			ours[payssam.BillID(id)] = id
		}
	}
	entries := make([]checker.LedgerEntry, len(ledger))
	for i, e := range ledger {
		if id, ok := ours[e.BillID]; ok {
			e.BillID = id
		}
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
	// The requests' own invariants, from what was published to
	// payment.requests, and what this workload expects besides.
	requests, err := checker.ReadTopic(ctx, brokers, events.TopicRequests)
	if err != nil {
		t.Fatal(err)
	}
	reqs := checker.ParseRequests(requests)
	rr := checker.CheckRequests(reqs, entries, topic)
	rep.Violations = append(rep.Violations, rr.Violations...)
	expected, second := expectations(topic, &secondRepays)
	rep.Violations = append(rep.Violations, expected...)

	var paid, refunded, cancelled int
	_ = st.Pool.QueryRow(ctx, `SELECT count(*) FILTER (WHERE state = 'paid'), count(*) FILTER (WHERE state = 'refunded'),
		count(*) FILTER (WHERE state = 'cancelled') FROM charges`).Scan(&paid, &refunded, &cancelled)
	t.Logf("published %d messages: %s", len(requests), counts(rr.Requests))
	t.Logf("outcomes: %s; second re-payments (by event): %s", counts(rr.Outcomes), counts(second))
	t.Logf("checked %d charges (%d paid, %d refunded, %d cancelled), %d bills, %d events; %d PG calls (%d auto-pay, %d KakaoTalk, %d refund, %d destroy); %d violations",
		rep.Charges, paid, refunded, cancelled, rep.Bills, rep.Published, len(ledger), sim.Calls(pgsim.OpAutoPay), sim.Calls(pgsim.OpKakaoBill),
		sim.Calls(pgsim.OpRefund), sim.Calls(pgsim.OpDestroy), len(rep.Violations))
	if !rep.OK() {
		t.Fatalf("violations:\n%s\n\n%s", strings.Join(rep.Violations, "\n"), relevantLines(idsIn(rep.Violations), logs))
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

// request is one request event on the charge's key. dup 1 publishes it
// twice with one event id (a producer retry), dup 2 twice with two (a
// re-send of the same content).
func request(key, typ string, dup int, data map[string]any) []kafka.Message {
	msg := func() kafka.Message {
		b, _ := json.Marshal(map[string]any{"specversion": "1.0", "id": uuid.NewString(), "source": "chaos",
			"type": typ, "datacontenttype": "application/json", "data": data})
		return kafka.Message{Key: []byte(key), Value: b}
	}
	m := msg()
	switch dup {
	case 1:
		return []kafka.Message{m, m}
	case 2:
		return []kafka.Message{m, msg()}
	}
	return []kafka.Message{m}
}

// workload is what charge i gets besides its charge request: now goes
// right behind it, follow later (a few seconds, or once it has settled).
//
//   - every 7th: a cancel, which arrives while the bill is being placed, so
//     it must wait for the placement; then it destroys the bill or, if the
//     customer paid first, is refused;
//   - every 6th: a refund, of a third of the amount or, every 30th, of all
//     of it; one that arrives before the bill is paid is refused;
//   - every 9th: a re-payment of the original amount; every 45th a second
//     one right behind it, which waits for the first and is then refused
//     (or, if the first one's new bill was paid meanwhile, re-pays that);
//
// a quarter of them published twice under one event id, a quarter re-sent
// under a new one.
func workload(i int, id string, secondRepays *sync.Map) (now, follow []kafka.Message) {
	if i%7 == 3 {
		now = request(id, events.TypeCancelRequested, (i/7)%4, map[string]any{"merchant_id": "m", "charge_id": id, "reason": "chaos"})
	}
	if i%6 == 0 {
		amount := (1000 + i) / 3
		if i%30 == 0 {
			amount = 1000 + i
		}
		follow = append(follow, request(id, events.TypeRefundRequested, (i/6)%4,
			map[string]any{"merchant_id": "m", "charge_id": id, "refund_id": fmt.Sprint("refund-", i), "amount": amount, "reason": "chaos"})...)
	}
	if i%9 == 0 {
		first := fmt.Sprint("repay-", i)
		follow = append(follow, request(id, events.TypeRepayRequested, (i/9)%4, map[string]any{"merchant_id": "m", "charge_id": id, "repay_id": first})...)
		if i%45 == 0 {
			second := request(id, events.TypeRepayRequested, (i/45)%3, map[string]any{"merchant_id": "m", "charge_id": id, "repay_id": first + "-again"})
			for _, m := range second {
				var e struct{ ID string }
				_ = json.Unmarshal(m.Value, &e)
				secondRepays.Store(e.ID, first)
			}
			follow = append(follow, second...)
		}
	}
	return now, follow
}

// followUp is requests on one charge to publish later: at a time, and if
// settled, not before the charge has left placing and requested (or 40 s
// have passed).
type followUp struct {
	chargeID string
	msgs     []kafka.Message
	at       time.Time
	settled  bool
}

// publishLater publishes the follow-ups as they come due until the channel
// is closed and none is left.
func publishLater(ctx context.Context, w *kafka.Writer, st *store.Store, later <-chan followUp) error {
	var waiting []followUp
	for open := true; open || len(waiting) > 0; {
		for drained := false; open && !drained; {
			select {
			case f, ok := <-later:
				if !ok {
					open = false
				} else {
					waiting = append(waiting, f)
				}
			default:
				drained = true
			}
		}
		now := time.Now()
		var ids []string
		for _, f := range waiting {
			if f.settled && !now.Before(f.at) {
				ids = append(ids, f.chargeID)
			}
		}
		settled := map[string]bool{}
		if len(ids) > 0 {
			// Failing (the database restarting), they wait for the next round.
			rows, err := st.Pool.Query(ctx, `SELECT charge_id FROM charges
				WHERE merchant_id = 'm' AND charge_id = ANY($1) AND state NOT IN ('placing', 'requested')`, ids)
			if err == nil {
				for rows.Next() {
					var id string
					if rows.Scan(&id) == nil {
						settled[id] = true
					}
				}
				rows.Close()
			}
		}
		var due []kafka.Message
		rest := waiting[:0]
		for _, f := range waiting {
			if now.Before(f.at) || f.settled && !settled[f.chargeID] && now.Before(f.at.Add(40*time.Second)) {
				rest = append(rest, f)
				continue
			}
			due = append(due, f.msgs...)
		}
		waiting = rest
		if len(due) > 0 {
			if err := w.WriteMessages(ctx, due...); err != nil {
				return err
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	return nil
}

// nudge is a cancel of an unknown charge on each of the partitions.
func nudge(partitions []int, round int) []kafka.Message {
	all := make([]int, 12)
	for p := range all {
		all[p] = p
	}
	var out []kafka.Message
	for _, p := range partitions {
		for i := 0; ; i++ {
			key := fmt.Sprintf("nudge-%d-%d-%d", round, p, i)
			if (&kafka.Hash{}).Balance(kafka.Message{Key: []byte(key)}, all...) == p {
				out = append(out, request(key, events.TypeCancelRequested, 0, map[string]any{"merchant_id": "m", "charge_id": key, "reason": "nudge"})...)
				break
			}
		}
	}
	return out
}

// unhandled is how many requests the workers' consumer group has not
// committed yet, its committed offset per partition and the partitions it
// has not committed to the end.
func unhandled(ctx context.Context, addr string) (committed map[int]int64, lagging []int, behind int64, err error) {
	cl := &kafka.Client{Addr: kafka.TCP(addr), Timeout: 5 * time.Second}
	parts := make([]int, 12)
	last := make([]kafka.OffsetRequest, 12)
	for p := range parts {
		parts[p], last[p] = p, kafka.LastOffsetOf(p)
	}
	lo, err := cl.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{events.TopicRequests: last}})
	if err != nil {
		return nil, nil, -1, err
	}
	of, err := cl.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: "payflow", Topics: map[string][]int{events.TopicRequests: parts}})
	if err != nil {
		return nil, nil, -1, err
	}
	committed = map[int]int64{}
	for _, p := range of.Topics[events.TopicRequests] {
		if p.Error != nil {
			return nil, nil, -1, p.Error
		}
		committed[p.Partition] = max(p.CommittedOffset, 0)
	}
	for _, p := range lo.Topics[events.TopicRequests] {
		if p.Error != nil {
			return nil, nil, -1, p.Error
		}
		if d := p.LastOffset - committed[p.Partition]; d > 0 {
			behind += d
			lagging = append(lagging, p.Partition)
		}
	}
	sort.Ints(lagging)
	return committed, lagging, behind, nil
}

// expectations are what this workload expects beyond the checker's
// invariants: no request was judged while its charge was still placing a
// bill (it waits), and a second re-payment that came right behind a
// processed first one was refused, or re-paid the first one's new bill
// after the customer had paid it; never the bill the first one re-paid.
func expectations(topic []kafka.Message, secondRepays *sync.Map) (out []string, tally map[string]int) {
	type event struct {
		ID   string `json:"id"`
		Type string `json:"type"`
		Data struct {
			ChargeID       string `json:"charge_id"`
			RepayID        string `json:"repay_id"`
			OldBillID      string `json:"old_bill_id"`
			BillID         string `json:"bill_id"`
			Reason         string `json:"reason"`
			Detail         string `json:"detail"`
			RequestEventID string `json:"request_event_id"`
		} `json:"data"`
	}
	tally = map[string]int{}
	seen := map[string]bool{}
	processed := map[string]event{}
	rejected := map[string]event{}
	for _, m := range topic {
		var e event
		if json.Unmarshal(m.Value, &e) != nil || seen[e.ID] {
			continue
		}
		seen[e.ID] = true
		switch e.Type {
		case events.TypeRepayProcessed:
			processed[e.Data.RepayID] = e
		case events.TypeRejected:
			rejected[e.Data.RequestEventID] = e
			if strings.Contains(e.Data.Detail, "charge is placing") {
				out = append(out, fmt.Sprintf("request %s (charge %s) was rejected while its charge was still placing: %s",
					e.Data.RequestEventID, e.Data.ChargeID, e.Data.Detail))
			}
		}
	}
	secondRepays.Range(func(k, v any) bool {
		ev, first := k.(string), v.(string)
		p, ok := processed[first]
		if !ok {
			tally["first not processed"]++
			return true
		}
		if rej, ok := rejected[ev]; ok {
			tally["refused "+rej.Data.Reason]++
			if rej.Data.Reason != events.RejectInvalidState {
				out = append(out, fmt.Sprintf("second re-payment %s (charge %s) was rejected %s, want invalid_state", ev, rej.Data.ChargeID, rej.Data.Reason))
			}
			return true
		}
		again, ok := processed[first+"-again"]
		if !ok {
			tally["neither"]++ // the checker reports it
			return true
		}
		tally["re-paid the new bill"]++
		if again.Data.OldBillID != p.Data.BillID {
			out = append(out, fmt.Sprintf("second re-payment %s (charge %s) re-paid bill %s, not the first re-payment's new bill %s",
				first+"-again", p.Data.ChargeID, again.Data.OldBillID, p.Data.BillID))
		}
		return true
	})
	return out, tally
}

func counts(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "%s=%d ", k, m[k])
	}
	return strings.TrimSpace(b.String())
}

// idsIn are the charge, bill and event ids the violations name (at most
// 20).
func idsIn(violations []string) []string {
	idRE := regexp.MustCompile(`chaos-\d+|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}`)
	seen := map[string]bool{}
	var ids []string
	for _, v := range violations {
		for _, id := range idRE.FindAllString(v, -1) {
			if !seen[id] && len(ids) < 20 {
				seen[id] = true
				ids = append(ids, id)
			}
		}
	}
	return ids
}

// stuck describes the requests the consumer group has not committed: each
// with its key and type, and the worker log lines naming them.
func stuck(ctx context.Context, brokers []string, committed map[int]int64, logs []string) string {
	msgs, err := checker.ReadTopic(ctx, brokers, events.TopicRequests)
	if err != nil {
		return "requests not read: " + err.Error()
	}
	var b strings.Builder
	var needles []string
	for _, m := range msgs {
		if m.Offset < committed[m.Partition] {
			continue
		}
		var e struct{ ID, Type string }
		_ = json.Unmarshal(m.Value, &e)
		fmt.Fprintf(&b, "not handled: partition %d offset %d key %s %s %s\n", m.Partition, m.Offset, m.Key, e.Type, e.ID)
		if len(needles) < 30 {
			needles = append(needles, string(m.Key), e.ID, fmt.Sprintf("partition=%d offset=%d", m.Partition, m.Offset))
		}
	}
	return b.String() + relevantLines(needles, logs)
}

// relevantLines are the worker log lines that hold one of the needles as
// a whole word (charge, bill or event ids), so that a failure shows its
// interleaving.
func relevantLines(needles []string, logs []string) string {
	if len(needles) == 0 {
		return ""
	}
	var pats []string
	for _, id := range needles {
		pats = append(pats, regexp.QuoteMeta(id))
	}
	match := regexp.MustCompile(`(^|[^\w-])(` + strings.Join(pats, "|") + `)($|[^\w-])`)
	var b strings.Builder
	for i, name := range logs {
		data, err := os.ReadFile(name)
		if err != nil {
			continue
		}
		n := 0
		for _, line := range strings.Split(string(data), "\n") {
			if match.MatchString(line) && n < 200 {
				fmt.Fprintf(&b, "worker-%d: %s\n", i, line)
				n++
			}
		}
	}
	return "worker log lines naming them:\n" + b.String()
}
