package sim

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/payflow/payflow/api"
	"github.com/payflow/payflow/events"
	"github.com/payflow/payflow/pgclient"
	"github.com/payflow/payflow/stdwebhook"
	"github.com/payflow/payflow/store"
	"github.com/payflow/payflow/webhook"
	"github.com/payflow/payflow/worker"
)

// Config shapes one simulated run.
type Config struct {
	// DSN is the Postgres database the run owns: it is emptied first.
	DSN  string
	Seed uint64
	// Steps is how many scheduled steps run with faults on; then faults
	// stop and the world drains.
	Steps int
	// Instances is how many worker processes share the consumer group
	// (default 3); Partitions how many partitions the request topic has
	// (default 4); Charges how many charge ids the workload uses (default
	// 5, so requests collide). Even seeds, which group the stores' claims
	// and results, default to 2, 8 and 8.
	Instances, Partitions, Charges int
	// FaultRate is the chance that a PG call meets a fault while faults are
	// on (default 0.3).
	FaultRate float64
	// Trace, when set, receives every step as it happens.
	Trace io.Writer
}

func (c *Config) defaults() {
	if c.Steps <= 0 {
		c.Steps = 150
	}
	if c.Instances <= 0 {
		c.Instances = 3
	}
	if c.Partitions <= 0 {
		c.Partitions = 4
	}
	if c.Charges <= 0 {
		c.Charges = 5
	}
	if c.FaultRate <= 0 {
		c.FaultRate = 0.3
	}
}

// lease is the workers' lease in virtual time; the retry budget and the
// call timeouts fit in it, as serve requires.
const (
	lease       = 2 * time.Minute
	retryBudget = 30 * time.Second
)

// World is one simulated run: the real worker and store on a real
// database, with the PG, Kafka's delivery and time simulated.
type World struct {
	cfg Config
	rng *rand.Rand
	// sent counts, per process and statement text, the statements sent:
	// a statement's database faults are drawn from the seed, its process,
	// its text and that count (see statementDice), not from rng.
	sent    map[sentKey]uint64
	clock   *Clock
	pg      *PG
	db      *store.Store
	parts   []*partition
	insts   []*instance
	methods *methodBook
	reqs    []request
	step    int
	faults  bool
	// group is whether the processes' stores group their claims and
	// results (store.GroupCommit): on in even seeds, so both paths run.
	group bool
	trace []string
	// tasks are what processes are in the middle of; current is the one
	// running (see sched.go).
	tasks   []*task
	current *task
	spawned int
	bills   int
	// secret signs the PG's webhooks.
	secret stdwebhook.Secret
	// broken are invariants a step saw broken as it happened (an answer
	// the API must never give); the model reports them.
	broken []string
	// Stats counts steps, faults and group-commit queueing by kind.
	Stats map[string]int
	model *model
}

type partition struct {
	id        int
	log       []message
	committed int
	owner     *instance
}

type message struct {
	req   int // index into World.reqs
	value []byte
}

// instance is one worker process.
type instance struct {
	name    string
	st      *store.Store
	w       *worker.Worker
	crashed bool
	// cursor is the next offset this process handles, per partition it
	// owns or was revoked from; until bounds a revoked partition: the
	// messages it had fetched before the rebalance.
	cursor   map[int]int
	until    map[int]int
	inflight map[int]bool // partitions with a message being handled
	recv     *webhook.Receiver
	api      http.Handler
}

// request is a request event the workload published.
type request struct {
	typ      string
	eventID  string
	merchant string
	charge   string
	refundID string // refunds
	repayID  string // re-payments
	member   string // charges
	amount   int64
	content  string // what makes two requests the same request
}

// New prepares a world: an emptied database and the first processes.
func New(ctx context.Context, cfg Config) (*World, error) {
	group := cfg.Seed%2 == 0
	if group {
		// Even seeds group claims and results (World.group), on fewer
		// processes with more partitions and charges, so that a process
		// has several charges in flight and their calls share flushes.
		cfg.Instances = cmp.Or(cfg.Instances, 2)
		cfg.Partitions = cmp.Or(cfg.Partitions, 8)
		cfg.Charges = cmp.Or(cfg.Charges, 8)
	}
	cfg.defaults()
	db, err := store.Open(ctx, cfg.DSN)
	if err != nil {
		return nil, err
	}
	if _, err := db.Pool.Exec(ctx, `TRUNCATE charges, bills, refunds, repays, webhook_receipts, outbox, rejected_requests, payment_methods RESTART IDENTITY CASCADE`); err != nil {
		db.Close()
		return nil, fmt.Errorf("sim: empty the database: %w", err)
	}
	w := &World{cfg: cfg, rng: rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15)), clock: NewClock(), pg: NewPG(),
		db: db, methods: newMethodBook(), faults: true, secret: stdwebhook.Secret(fmt.Appendf(nil, "sim-webhook-secret-%032d", cfg.Seed)), Stats: map[string]int{}, sent: map[sentKey]uint64{}}
	w.model = newModel(w)
	w.group = group
	w.logf("group commit: %t", group)
	w.pg.fault = w.pgFault
	w.pg.log = w.logf
	w.pg.faulty = func() bool { return w.faults }
	w.pg.maxCalls = 20 * (w.cfg.Steps + 100)
	w.pg.after = w.park
	w.clock.wait = w.park
	w.pg.step = func() int { return w.step }
	for i := range cfg.Partitions {
		w.parts = append(w.parts, &partition{id: i})
	}
	for range cfg.Instances {
		inst, err := w.spawn(ctx)
		if err != nil {
			w.Close()
			return nil, err
		}
		w.insts = append(w.insts, inst)
	}
	for i, p := range w.parts {
		w.assign(p, w.insts[i%len(w.insts)])
	}
	w.methods.blip = func() bool {
		if w.faults && w.rng.Float64() < w.cfg.FaultRate/3 {
			w.Stats["fault_key_blip"]++
			w.logf("      key source: transient error")
			return true
		}
		return false
	}
	return w, nil
}

// Close releases the world's connections.
func (w *World) Close() {
	// Tasks still parked (a run that failed mid-way) hold connections:
	// let them end first.
	w.faults = false
	w.finishAll()
	for _, in := range w.insts {
		in.st.Close()
	}
	w.db.Close()
}

func (w *World) spawn(ctx context.Context) (*instance, error) {
	in := &instance{}
	// With grouping off nothing queues: every claim and result is sent
	// alone, as its own statement. With it on, a call queued for a flush
	// blocks its task, and the flush of what queued is a task of its own,
	// so the schedule interleaves it like any other.
	group := store.GroupCommit{Flushes: -1}
	if w.group {
		group = store.GroupCommit{
			Go:       func(f func()) { w.spawnTask(in, "flush", f) },
			Wait:     w.block,
			Observer: flushes{w, in},
		}
	}
	st, err := store.OpenWith(ctx, w.cfg.DSN, store.Options{Tracer: &statementTracer{w: w, in: in}, Clock: w.clock.Now, GroupCommit: group})
	if err != nil {
		return nil, err
	}
	w.spawned++
	*in = instance{name: fmt.Sprintf("w%d", w.spawned), st: st, cursor: map[int]int{}, until: map[int]int{}, inflight: map[int]bool{}}
	pg := w.pg.Client(func() { w.crash(in) }, func() bool { return in.crashed })
	in.w = worker.New(worker.Config{
		Store: st, Methods: w.methods, Owner: in.name, Lease: lease, RetryBudget: retryBudget, RetryInitial: time.Second,
		PG:     pg,
		Logger: slog.New(&traceHandler{w: w, name: fmt.Sprintf("w%d", w.spawned)}), Now: w.clock.Now, Timer: w.clock.Timer,
		Jitter: w.rng.Float64, NewBillID: w.newBillID,
	})
	in.api = api.New(api.Config{Store: st, PG: pg, MerchantTokens: map[string]string{"m1": "token-m1", "m2": "token-m2"},
		Logger: slog.New(&traceHandler{w: w, name: in.name})})
	in.recv = &webhook.Receiver{
		Verifiers: map[string]webhook.Verifier{"sim": &stdwebhook.Verifier{Secrets: []stdwebhook.Secret{w.secret}, Now: w.clock.Now}},
		Settler:   in.w,
		Logger:    slog.New(&traceHandler{w: w, name: in.name}),
	}
	return in, nil
}

// statementTracer sits in front of every statement a process sends: a dead
// process's statements fail, and a live one may park before a statement
// (outside a transaction, so that it holds no lock while parked) and let
// the world move on, as a process stalled between two statements would.
// It also breaks connections, as a network or a database restart does:
// inside a transaction the connection drops before the statement (the
// server rolls the transaction back); at a commit, or a statement outside
// a transaction, the statement runs and commits and then the connection
// drops before its answer arrives, so the process cannot know it did.
type statementTracer struct {
	w    *World
	in   *instance
	self bool // the tracer is running a statement of its own
}

func (t *statementTracer) TraceQueryStart(ctx context.Context, conn *pgx.Conn, data pgx.TraceQueryStartData) context.Context {
	if t.self {
		return ctx
	}
	first := ""
	if stmt := strings.Fields(data.SQL); len(stmt) > 0 {
		first = strings.ToLower(stmt[0])
	}
	return t.before(ctx, conn, first, data.SQL, func() {
		if first == "commit" {
			err := conn.PgConn().Exec(ctx, "commit").Close()
			t.w.logf("      %s's commit lands (%v), its answer is lost", t.in.name, err)
		} else {
			_, err := conn.Exec(ctx, data.SQL, data.Args...)
			t.w.logf("      %s's statement (%s) lands (%v), its answer is lost", t.in.name, first, err)
		}
	})
}

// TraceBatchStart meets a group-commit flush (a pgx batch: one round trip,
// one implicit transaction) as a statement outside a transaction, except
// that its connection may also drop before it is sent: nothing of it is
// written, and every caller in it gets the error.
func (t *statementTracer) TraceBatchStart(ctx context.Context, conn *pgx.Conn, data pgx.TraceBatchStartData) context.Context {
	if t.self {
		return ctx
	}
	var text strings.Builder
	for _, q := range data.Batch.QueuedQueries {
		text.WriteString(q.SQL)
		text.WriteByte(0)
	}
	return t.before(ctx, conn, "batch", text.String(), func() {
		b := &pgx.Batch{}
		for _, q := range data.Batch.QueuedQueries {
			b.Queue(q.SQL, q.Arguments...)
		}
		err := conn.SendBatch(ctx, b).Close()
		t.w.logf("      %s's batch of %d statements lands (%v), its answer is lost", t.in.name, b.Len(), err)
	})
}

func (t *statementTracer) TraceBatchQuery(context.Context, *pgx.Conn, pgx.TraceBatchQueryData) {}

func (t *statementTracer) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData) {}

// before is where a process's statement (first is its first word, or
// "batch"; sql its text) may park, fail for a dead process, or meet a
// broken connection; land runs the statement itself, so that it takes
// effect before the connection drops.
func (t *statementTracer) before(ctx context.Context, conn *pgx.Conn, first, sql string, land func()) context.Context {
	w := t.w
	mine := !t.in.crashed && w.current != nil && w.current.in == t.in && w.faults
	var dice *rand.Rand
	if mine {
		dice = w.statementDice(t.in, sql)
	}
	inTx := conn.PgConn().TxStatus() != 'I'
	park := w.cfg.FaultRate / 3
	if w.group {
		park = w.cfg.FaultRate // so that others' claims and results queue behind a flush
	}
	if mine && !inTx && dice.Float64() < park {
		w.Stats["park_statement"]++
		if dice.IntN(4) == 0 {
			// A long stall (a GC pause, a starved CPU, a frozen VM): the
			// process's lease runs out while it stands here.
			w.Stats["stall_past_lease"]++
			w.logf("      %s stalls past its lease", t.in.name)
			_ = w.stepLeasesExpire(ctx)
		}
		w.park()
	}
	if t.in.crashed {
		dead, cancel := context.WithCancelCause(ctx)
		cancel(errCrashed)
		return dead
	}
	rate := w.cfg.FaultRate / 20
	if first == "batch" {
		rate = w.cfg.FaultRate // batches are few: meet them often
	}
	if mine && dice.Float64() < rate {
		switch {
		case first == "batch" && dice.IntN(2) == 0:
			w.Stats["fault_batch_drop"]++
			w.logf("      %s's database connection drops before its batch", t.in.name)
		case first == "batch":
			t.self = true
			land()
			t.self = false
			w.Stats["fault_batch_answer_lost"]++
		case inTx && first != "commit":
			w.Stats["fault_db_drop"]++
			w.logf("      %s's database connection drops inside a transaction (before %s)", t.in.name, first)
		default:
			// The statement (or the commit) takes effect; its answer is lost.
			t.self = true
			land()
			t.self = false
			w.Stats["fault_db_answer_lost"]++
		}
		_ = conn.PgConn().Conn().Close()
	}
	return ctx
}

// sentKey names a statement text as sent by one process.
type sentKey struct{ process, sql string }

// statementDice is the random stream of one statement: a function of the
// seed, the process (its name), the statement's text and how many times
// the process sent that text before. So a change to the store that adds,
// drops or reorders statements moves the faults of those statements only;
// every other statement meets the faults it met before, and the world's
// own choices (what runs next, what is published, which PG call fails),
// drawn from rng, do not move unless one of those faults does. A bug's
// seed then survives most changes to the store's statements.
func (w *World) statementDice(in *instance, sql string) *rand.Rand {
	k := sentKey{in.name, sql}
	n := w.sent[k]
	w.sent[k] = n + 1
	h := fnv.New64a()
	_, _ = h.Write([]byte(in.name))
	_, _ = h.Write([]byte{0})
	_, _ = h.Write([]byte(sql))
	return rand.New(rand.NewPCG(splitmix(w.cfg.Seed^h.Sum64()), splitmix(n^0x9e3779b97f4a7c15)))
}

// splitmix is SplitMix64's finalizer: close inputs give unrelated outputs.
func splitmix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

func (t *statementTracer) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

// traceHandler writes a process's log lines into the trace.
type traceHandler struct {
	w     *World
	name  string
	attrs []slog.Attr
}

func (h *traceHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h *traceHandler) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString(r.Message)
	r.Attrs(func(a slog.Attr) bool {
		switch a.Key {
		case "phone":
		case "request_id", "duration_ms":
			// Random and wall-clock: a seed's trace must replay byte for
			// byte.
		default:
			fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
		}
		return true
	})
	h.w.logf("      [%s] %s", h.name, b.String())
	return nil
}

func (h *traceHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &traceHandler{w: h.w, name: h.name, attrs: append(append([]slog.Attr(nil), h.attrs...), as...)}
}

func (h *traceHandler) WithGroup(string) slog.Handler { return h }

// sockets matches a connection's addresses in an error: its local port is
// the system's choice, so the trace says only "tcp".
var sockets = regexp.MustCompile(`tcp \S+:\d+->\S+:\d+`)

// flushes hears an instance's group-commit flushes: one that carried
// several items is counted and traced.
type flushes struct {
	w  *World
	in *instance
}

func (f flushes) Flushed(kind string, items int, _ time.Duration) {
	if items > 1 {
		f.w.Stats["group_flush"]++
		f.w.logf("      %s flushes %d %s together", f.in.name, items, kind)
	}
}

func (w *World) logf(format string, a ...any) {
	line := fmt.Sprintf("%4d ", w.step) + sockets.ReplaceAllString(fmt.Sprintf(format, a...), "tcp")
	w.trace = append(w.trace, line)
	if w.cfg.Trace != nil {
		fmt.Fprintln(w.cfg.Trace, line)
	}
}

// Trace returns every step of the run so far, one line each.
func (w *World) Trace() []string { return w.trace }

// pgFault rolls the dice for one PG call.
func (w *World) pgFault(op string) fault {
	if !w.faults || w.rng.Float64() >= w.cfg.FaultRate {
		return faultNone
	}
	kinds := []fault{faultTransient, faultUnknown, faultUnknownExecuted, faultLate, faultCrashBefore, faultCrashAfter, faultOutage}
	f := kinds[w.rng.IntN(len(kinds))]
	if op == "lookup" && (f == faultLate || f == faultUnknownExecuted) {
		f = faultUnknown // a look-up changes nothing
	}
	w.Stats["fault_"+f.String()]++
	who := "?"
	if w.current != nil {
		who = w.current.in.name
	}
	w.logf("      pg %s by %s: %s", op, who, f)
	return f
}

// crash kills a process at once: its database connections close (its
// deferred clean-ups fail as a dead process's would), its partitions go to
// a replacement that starts from the committed offsets.
func (w *World) crash(in *instance) {
	if in.crashed {
		return
	}
	in.crashed = true // its statements fail from now on (statementTracer); its pool closes once its tasks have ended
	w.logf("      %s crashes", in.name)
}

// replaceCrashed starts a new process for each crashed one and hands it
// the partitions the dead one owned.
func (w *World) replaceCrashed(ctx context.Context) error {
	for i, in := range w.insts {
		if !in.crashed {
			continue
		}
		// What the dead process was in the middle of ends now: its calls
		// fail, its database is gone.
		for _, t := range append([]*task(nil), w.tasks...) {
			if t.in == in {
				w.finish(t)
			}
		}
		in.st.Close()
		next, err := w.spawn(ctx)
		if err != nil {
			return err
		}
		w.insts[i] = next
		for _, p := range w.parts {
			if p.owner == in {
				w.assign(p, next)
			}
		}
		w.logf("      %s replaces %s", next.name, in.name)
	}
	return nil
}

// assign gives p to in, from the committed offset.
func (w *World) assign(p *partition, in *instance) {
	p.owner = in
	in.cursor[p.id] = p.committed
	delete(in.until, p.id)
}

func (w *World) alive() []*instance {
	var out []*instance
	for _, in := range w.insts {
		if !in.crashed {
			out = append(out, in)
		}
	}
	return out
}

func (w *World) pick(n int) int { return w.rng.IntN(n) }

func partitionOf(key string, n int) int {
	h := uint32(2166136261)
	for i := 0; i < len(key); i++ {
		h = (h ^ uint32(key[i])) * 16777619
	}
	return int(h % uint32(n))
}

// publish appends a request to its partition, as a producer would; sometimes
// twice (a producer retry).
func (w *World) publish(r request, value []byte) {
	w.reqs = append(w.reqs, r)
	p := w.parts[partitionOf(r.charge, len(w.parts))]
	p.log = append(p.log, message{req: len(w.reqs) - 1, value: value})
	w.logf("publish %s %s/%s %s (p%d@%d)", short(r.typ), r.merchant, r.charge, r.detail(), p.id, len(p.log)-1)
	if w.rng.IntN(8) == 0 {
		p.log = append(p.log, message{req: len(w.reqs) - 1, value: value})
		w.logf("      producer retry: the same event again (p%d@%d)", p.id, len(p.log)-1)
	}
}

func (r request) detail() string {
	switch {
	case r.refundID != "":
		return fmt.Sprintf("refund=%s amount=%d", r.refundID, r.amount)
	case r.repayID != "":
		return fmt.Sprintf("repay=%s amount=%d", r.repayID, r.amount)
	case r.amount != 0:
		return fmt.Sprintf("amount=%d", r.amount)
	}
	return ""
}

func short(typ string) string {
	return strings.TrimSuffix(strings.TrimPrefix(typ, "payment."), ".requested")
}

// Step runs one scheduled step.
func (w *World) Step(ctx context.Context) error {
	w.step++
	if err := w.replaceCrashed(ctx); err != nil {
		return err
	}
	type action struct {
		weight int
		name   string
		run    func(context.Context) error
	}
	actions := []action{
		{3 * min(len(w.ready()), 4), "resume", func(context.Context) error { w.stepResume(); return nil }},
		{6, "publish", w.stepPublish},
		{10, "deliver", w.stepDeliver},
		{1, "rebalance", w.stepRebalance},
		{1, "crash", w.stepCrash},
		{1, "lease_expiry", w.stepLeasesExpire},
		{2, "sweep", w.stepSweep},
		{2, "reconcile", w.stepReconcile},
		{3, "customer", w.stepCustomer},
		{3, "webhook", w.stepWebhook},
		{1, "method", w.stepMethod},
		{2, "bill_url", w.stepBillURL},
	}
	total := 0
	for _, a := range actions {
		total += a.weight
	}
	n := w.pick(total)
	for _, a := range actions {
		if n < a.weight {
			w.Stats["step_"+a.name]++
			return a.run(ctx)
		}
		n -= a.weight
	}
	return nil
}

// stepDeliver lets one process handle the next message of a partition it
// owns, or one it fetched before losing the partition.
func (w *World) stepDeliver(ctx context.Context) error {
	type cand struct {
		in *instance
		p  *partition
	}
	var cands []cand
	for _, in := range w.alive() {
		for _, p := range w.parts {
			if !in.inflight[p.id] && w.deliverable(in, p) {
				cands = append(cands, cand{in, p})
			}
		}
	}
	if len(cands) == 0 {
		return nil
	}
	c := cands[w.pick(len(cands))]
	commit := w.rng.IntN(3) > 0
	name := fmt.Sprintf("deliver p%d@%d", c.p.id, c.in.cursor[c.p.id])
	w.logf("start %s on %s", name, c.in.name)
	w.spawnTask(c.in, name, func() { w.deliver(ctx, c.in, c.p, commit) })
	return nil
}

func (w *World) deliverable(in *instance, p *partition) bool {
	cur, ok := in.cursor[p.id]
	if !ok {
		return false
	}
	if p.owner == in {
		return cur < len(p.log)
	}
	return cur < in.until[p.id]
}

// deliver has in handle the message at its cursor of p; commit says whether
// the offset is committed right after (a commit may also come later, or
// never, before a crash).
func (w *World) deliver(ctx context.Context, in *instance, p *partition, commit bool) bool {
	off := in.cursor[p.id]
	m := p.log[off]
	r := w.reqs[m.req]
	in.inflight[p.id] = true
	err := in.w.Handle(ctx, m.value)
	delete(in.inflight, p.id)
	if in.crashed {
		w.logf("deliver p%d@%d %s %s/%s to %s: died mid-request", p.id, off, short(r.typ), r.merchant, r.charge, in.name)
		return false
	}
	if err != nil && !errors.Is(err, events.ErrUnparseable) {
		w.Stats["handle_retry"]++
		w.logf("deliver p%d@%d %s %s/%s to %s: not yet (%v)", p.id, off, short(r.typ), r.merchant, r.charge, in.name, err)
		return false
	}
	if in.cursor[p.id] == off {
		in.cursor[p.id] = off + 1
	}
	if p.owner == in && commit {
		p.committed = max(p.committed, off+1)
	}
	w.logf("deliver p%d@%d %s %s/%s to %s: done", p.id, off, short(r.typ), r.merchant, r.charge, in.name)
	return true
}

// stepRebalance moves a partition to another process; the old one keeps the
// messages it had already fetched (kafka-go hands them out after the
// revocation) and may still handle them.
func (w *World) stepRebalance(context.Context) error {
	alive := w.alive()
	if len(alive) < 2 {
		return nil
	}
	p := w.parts[w.pick(len(w.parts))]
	to := alive[w.pick(len(alive))]
	if to == p.owner {
		return nil
	}
	old := p.owner
	if old != nil && !old.crashed {
		old.until[p.id] = min(len(p.log), old.cursor[p.id]+1+w.rng.IntN(3))
	}
	w.assign(p, to)
	w.logf("rebalance p%d: %s → %s (from offset %d)", p.id, nameOf(old), to.name, p.committed)
	return nil
}

func nameOf(in *instance) string {
	if in == nil {
		return "-"
	}
	return in.name
}

func (w *World) stepCrash(context.Context) error {
	alive := w.alive()
	if len(alive) == 0 {
		return nil
	}
	w.crash(alive[w.pick(len(alive))])
	return nil
}

// stepLeasesExpire lets a lease's worth of time pass: every request still
// in flight lands first (a request lands within its sender's lease), then
// every lease expires.
func (w *World) stepLeasesExpire(ctx context.Context) error {
	n := w.pg.Land()
	// The store measures leases and waits by the same clock.
	w.clock.Advance(lease + time.Second)
	w.logf("a lease's time passes (%d requests in flight landed)", n)
	return nil
}

func (w *World) stepSweep(ctx context.Context) error {
	alive := w.alive()
	if len(alive) == 0 {
		return nil
	}
	in := alive[w.pick(len(alive))]
	w.spawnTask(in, "sweep", func() {
		n, _ := in.w.Sweep(ctx, 100)
		_ = in.w.SweepRefunds(ctx, 100)
		w.logf("sweep by %s: %d charges", in.name, n)
	})
	return nil
}

func (w *World) stepReconcile(ctx context.Context) error {
	alive := w.alive()
	if len(alive) == 0 {
		return nil
	}
	in := alive[w.pick(len(alive))]
	// Reconciliation's own waits (age, per-bill backoff) pass: the clock
	// moves to the first bill's next look-up.
	var next *time.Time
	if err := w.db.Pool.QueryRow(ctx, `SELECT min(reconcile_after) FROM bills
		WHERE status IN ('requested', 'abandoned')`).Scan(&next); err != nil {
		return err
	}
	w.clock.Advance(time.Second)
	if next != nil && next.After(w.clock.Now()) {
		w.clock.Advance(next.Sub(w.clock.Now()) + time.Second)
	}
	w.spawnTask(in, "reconcile", func() {
		n, err := in.w.Reconcile(ctx, 0, 100)
		w.logf("reconcile by %s: %d settled (%v)", in.name, n, err)
	})
	return nil
}

// stepCustomer has a customer pay an open bill, or the PG expire or fail
// one.
func (w *World) stepCustomer(context.Context) error {
	open := w.pg.Open()
	if len(open) == 0 {
		return nil
	}
	bill := open[w.pick(len(open))]
	status := pgclient.StatusPaid
	switch w.rng.IntN(10) {
	case 0:
		status = pgclient.StatusExpired
	case 1:
		status = pgclient.StatusFailed
	}
	_ = w.pg.Settle(bill, status)
	w.logf("the PG settles bill %s %s", bill, status)
	return nil
}

// stepWebhook delivers a pending webhook through the real receiver, signed
// as the PG signs them: as it is, twice, with a wrong amount, or not at
// all (lost: reconciliation must find the result); and among them forged
// ones, which must change nothing: signed with another secret, altered
// after signing, or replayed long after their time.
func (w *World) stepWebhook(ctx context.Context) error {
	n := w.pg.pendingWebhooks()
	alive := w.alive()
	if n == 0 || len(alive) == 0 {
		return nil
	}
	wh := w.pg.takeWebhook(w.pick(n))
	in := alive[w.pick(len(alive))]
	mode := "delivered"
	if w.faults {
		switch w.rng.IntN(14) {
		case 0:
			w.logf("webhook %s for bill %s (%s) lost", wh.ID, wh.BillID, wh.Status)
			return nil
		case 1:
			mode = "delivered, and again later"
			w.pg.requeueWebhook(wh)
		case 2:
			bad := wh
			bad.Amount++
			w.post(ctx, in, bad, "with a wrong amount", w.secret, 0)
			w.pg.requeueWebhook(wh)
			return nil
		case 3:
			w.Stats["webhook_forged"]++
			forged := wh
			forged.Status = pgclient.StatusPaid
			w.post(ctx, in, forged, "forged (another secret)", []byte("not-the-pgs-secret-0123456789abcd"), 0)
			w.pg.requeueWebhook(wh)
			return nil
		case 4:
			w.Stats["webhook_forged"]++
			w.post(ctx, in, wh, "altered after signing", w.secret, 0, func(body []byte) []byte {
				return []byte(strings.Replace(string(body), `"status":"`+string(wh.Status)+`"`, `"status":"paid"`, 1))
			})
			w.pg.requeueWebhook(wh)
			return nil
		case 5:
			w.Stats["webhook_forged"]++
			w.post(ctx, in, wh, "replayed after its time", w.secret, -10*time.Minute)
			w.pg.requeueWebhook(wh)
			return nil
		}
	}
	if out := w.post(ctx, in, wh, mode, w.secret, 0); out == "retry" {
		w.pg.requeueWebhook(wh)
	}
	return nil
}

// post sends a webhook to in's receiver, signed with secret at the clock's
// time plus skew, its body passed through alter after signing; it reports
// what the receiver did, "retry" when the PG must send it again.
func (w *World) post(ctx context.Context, in *instance, wh Webhook, mode string, secret stdwebhook.Secret, skew time.Duration, alter ...func([]byte) []byte) string {
	body, _ := json.Marshal(map[string]any{"bill_id": wh.BillID, "status": string(wh.Status), "amount": wh.Amount,
		"pg_tx_id": wh.PGTxID, "occurred_at": w.clock.Now().UTC().Format(time.RFC3339Nano)})
	h := stdwebhook.Headers(secret, wh.ID, w.clock.Now().Add(skew), body)
	for _, f := range alter {
		body = f(body)
	}
	req := httptest.NewRequestWithContext(ctx, http.MethodPost, "/webhooks/pg/sim", bytes.NewReader(body))
	req.SetPathValue("provider", "sim")
	for k, v := range h {
		req.Header[k] = v
	}
	rec := httptest.NewRecorder()
	in.recv.ServeHTTP(rec, req)
	var answer struct {
		Result string `json:"result"`
	}
	_ = json.Unmarshal(rec.Body.Bytes(), &answer)
	res := fmt.Sprintf("%d %s", rec.Code, answer.Result)
	if rec.Code == http.StatusNotFound && in.crashed {
		res = "refused: died"
	}
	out := res
	switch rec.Code {
	case http.StatusOK, http.StatusUnauthorized, http.StatusUnprocessableEntity, http.StatusBadRequest:
	default: // 404 (not stored yet), 409 (still placing), 5xx: the PG sends it again
		out = "retry"
	}
	w.logf("webhook %s bill %s %s %s to %s: %s", wh.ID, wh.BillID, wh.Status, mode, in.name, res)
	return out
}

// stepBillURL has a merchant ask the API for a charge's pay URL, as its
// checkout page would. The URL handed out must be of that merchant's
// charge, and of a bill still open: a pay link to a bill given up on, paid
// or cancelled invites a payment nobody will record.
func (w *World) stepBillURL(ctx context.Context) error {
	alive := w.alive()
	if len(alive) == 0 {
		return nil
	}
	merchant, charge := fmt.Sprint("m", w.pick(2)+1), fmt.Sprint("c", w.pick(w.cfg.Charges)+1)
	in := alive[w.pick(len(alive))]
	before, err := w.model.bills(ctx)
	if err != nil {
		return err
	}
	w.spawnTask(in, "bill-url", func() {
		req := httptest.NewRequestWithContext(ctx, http.MethodGet, "/v1/charges/"+charge+"/bill-url", nil)
		req.Header.Set("Authorization", "Bearer token-"+merchant)
		rec := httptest.NewRecorder()
		in.api.ServeHTTP(rec, req)
		var answer struct {
			BillID string `json:"bill_id"`
		}
		_ = json.Unmarshal(rec.Body.Bytes(), &answer)
		w.logf("bill url of %s/%s from %s: %d %s", merchant, charge, in.name, rec.Code, answer.BillID)
		if rec.Code != http.StatusOK {
			return
		}
		b, ok := before[answer.BillID]
		if !ok {
			// Placed after the step began, while the request waited: it
			// cannot have been dead then; it must be that charge's.
			now, err := w.model.bills(ctx)
			if err != nil {
				return
			}
			if b, ok = now[answer.BillID]; !ok {
				w.broken = append(w.broken, fmt.Sprintf("the API handed %s/%s the URL of bill %s, which is not stored", merchant, charge, answer.BillID))
				return
			}
			b.status = "pending"
		}
		switch {
		case b.merchant != merchant || b.charge != charge:
			w.broken = append(w.broken, fmt.Sprintf("the API handed %s/%s the URL of bill %s of %s/%s", merchant, charge, answer.BillID, b.merchant, b.charge))
		case b.status != "requested" && b.status != "pending":
			w.broken = append(w.broken, fmt.Sprintf("the API handed %s/%s the URL of bill %s, %s when asked", merchant, charge, answer.BillID, b.status))
		}
	})
	return nil
}

// stepMethod deletes a member's card, or registers one again.
func (w *World) stepMethod(context.Context) error {
	member := members[w.pick(len(members))]
	if member.key == "" {
		return nil
	}
	deleted := w.methods.toggle(member.id)
	w.logf("member %s's card %s", member.id, map[bool]string{true: "deleted", false: "registered again"}[deleted])
	return nil
}

// members are the customers of the workload.
var members = []struct{ id, key string }{
	{"card", "bk_good"},
	{"card2", "bk_good2"},
	{"declining", "decline_card"},
	{"expired", "expired_card"},
	{"nomethod", ""},
	{"", ""}, // a guest
}

// stepPublish publishes the workload's next request.
func (w *World) stepPublish(context.Context) error {
	merchant := fmt.Sprint("m", w.pick(2)+1)
	charge := fmt.Sprint("c", w.pick(w.cfg.Charges)+1)
	prev := w.requestsFor(merchant, charge)
	if len(prev) == 0 || w.rng.IntN(10) == 0 {
		w.publishCharge(merchant, charge, prev)
		return nil
	}
	switch w.rng.IntN(10) {
	case 0, 1, 2:
		amount := []int64{1, 300, 700, 1000, 1001}[w.pick(5)]
		id := fmt.Sprint("r", w.pick(4)+1)
		if w.rng.IntN(4) == 0 {
			id = fmt.Sprint("repay:p", w.pick(3)+1) // a merchant's id that looks like a re-payment's
		}
		w.publishRefund(merchant, charge, id, amount)
	case 3, 4:
		w.publishRepay(merchant, charge, fmt.Sprint("p", w.pick(3)+1))
	case 5, 6:
		w.publishCancel(merchant, charge)
	default:
		// The same request again under a new event id (a resend).
		r := prev[w.pick(len(prev))]
		w.resend(r)
	}
	return nil
}

func (w *World) requestsFor(merchant, charge string) []request {
	var out []request
	for _, r := range w.reqs {
		if r.merchant == merchant && r.charge == charge {
			out = append(out, r)
		}
	}
	return out
}

// newBillID names bills by the seed and their number, so a run replays
// with the same names (and the PG lists its bills in the same order).
func (w *World) newBillID() string {
	w.bills++
	return uuid.NewSHA1(uuid.NameSpaceOID, fmt.Appendf(nil, "sim-%d-bill-%d", w.cfg.Seed, w.bills)).String()
}

func (w *World) newEventID() string {
	return uuid.NewSHA1(uuid.NameSpaceOID, fmt.Appendf(nil, "sim-%d-%d", w.cfg.Seed, len(w.reqs))).String()
}

func (w *World) event(typ, id string, data map[string]any) []byte {
	b, _ := json.Marshal(map[string]any{"specversion": "1.0", "id": id, "source": "sim", "type": typ,
		"subject": data["charge_id"], "datacontenttype": "application/json", "data": data})
	return b
}

func (w *World) publishCharge(merchant, charge string, prev []request) {
	m := members[w.pick(len(members))]
	amount := int64(1000)
	if len(prev) > 0 && w.rng.IntN(2) == 0 {
		amount = 2000 // the same charge id with other content: a conflict
	}
	phone := "010-1234-5678"
	if w.rng.IntN(15) == 0 {
		phone = "010-1234-0000" // cannot receive KakaoTalk bills
	}
	cust := map[string]any{"phone": phone, "name": "Kim"}
	if m.id != "" {
		cust["member_id"] = m.id
	}
	data := map[string]any{"merchant_id": merchant, "charge_id": charge, "amount": amount, "currency": "KRW", "order_name": "order", "customer": cust}
	r := request{typ: events.TypeChargeRequested, eventID: w.newEventID(), merchant: merchant, charge: charge, amount: amount, member: m.id,
		content: fmt.Sprintf("charge %d %s %s", amount, m.id, phone)}
	w.publish(r, w.event(r.typ, r.eventID, data))
}

func (w *World) publishRefund(merchant, charge, refundID string, amount int64) {
	data := map[string]any{"merchant_id": merchant, "charge_id": charge, "refund_id": refundID, "amount": amount, "reason": "r"}
	r := request{typ: events.TypeRefundRequested, eventID: w.newEventID(), merchant: merchant, charge: charge, refundID: refundID,
		amount: amount, content: fmt.Sprintf("refund %s %s %d", charge, refundID, amount)}
	w.publish(r, w.event(r.typ, r.eventID, data))
}

func (w *World) publishRepay(merchant, charge, repayID string) {
	data := map[string]any{"merchant_id": merchant, "charge_id": charge, "repay_id": repayID}
	r := request{typ: events.TypeRepayRequested, eventID: w.newEventID(), merchant: merchant, charge: charge, repayID: repayID,
		content: fmt.Sprintf("repay %s %s", charge, repayID)}
	w.publish(r, w.event(r.typ, r.eventID, data))
}

func (w *World) publishCancel(merchant, charge string) {
	data := map[string]any{"merchant_id": merchant, "charge_id": charge, "reason": "x"}
	r := request{typ: events.TypeCancelRequested, eventID: w.newEventID(), merchant: merchant, charge: charge, content: "cancel " + charge}
	w.publish(r, w.event(r.typ, r.eventID, data))
}

// resend publishes r's content again under a new event id.
func (w *World) resend(r request) {
	var raw map[string]json.RawMessage
	for _, p := range w.parts {
		for _, m := range p.log {
			if w.reqs[m.req].eventID == r.eventID {
				_ = json.Unmarshal(m.value, &raw)
			}
		}
	}
	var data map[string]any
	_ = json.Unmarshal(raw["data"], &data)
	r.eventID = w.newEventID()
	w.publish(r, w.event(r.typ, r.eventID, data))
}

// Drain stops the faults and lets every process finish: deliveries, lease
// expiries, sweeps, reconciliation and webhooks, until nothing changes. It
// reports whether the world came to rest.
func (w *World) Drain(ctx context.Context) (bool, error) {
	w.faults = false
	w.logf("faults stop; draining")
	w.finishAll()
	for _, in := range w.insts {
		in.until = map[int]int{}
	}
	for round := 0; round < 40; round++ {
		w.step++
		if err := w.replaceCrashed(ctx); err != nil {
			return false, err
		}
		for _, p := range w.parts {
			for p.owner.cursor[p.id] < len(p.log) {
				if !w.deliver(ctx, p.owner, p, true) {
					break
				}
			}
			// The consumer commits what it finished, sooner or later.
			p.committed = max(p.committed, p.owner.cursor[p.id])
		}
		alive := w.alive()
		for n := w.pg.pendingWebhooks(); n > 0; n-- {
			wh := w.pg.takeWebhook(0)
			if w.post(ctx, alive[0], wh, "delivered", w.secret, 0) == "retry" {
				w.pg.requeueWebhook(wh)
			}
		}
		if err := w.stepLeasesExpire(ctx); err != nil {
			return false, err
		}
		for _, in := range w.alive() {
			_, _ = in.w.Sweep(ctx, 100)
			_ = in.w.SweepRefunds(ctx, 100)
		}
		if err := w.stepReconcile(ctx); err != nil {
			return false, err
		}
		rest, why, err := w.atRest(ctx)
		if err != nil {
			return false, err
		}
		if rest {
			w.logf("at rest after %d drain rounds", round+1)
			return true, nil
		}
		w.logf("drain round %d: %s", round+1, why)
	}
	return false, nil
}

// atRest reports whether nothing is left to do, and if not, what is.
func (w *World) atRest(ctx context.Context) (bool, string, error) {
	var why []string
	for _, p := range w.parts {
		if p.committed < len(p.log) {
			why = append(why, fmt.Sprintf("p%d committed %d of %d", p.id, p.committed, len(p.log)))
		}
	}
	var placing, pending, repaying int
	err := w.db.Pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM charges WHERE state = 'placing'),
		(SELECT count(*) FROM refunds WHERE status = 'pending'),
		(SELECT count(*) FROM repays WHERE step IN ('refunding', 'placing'))`).Scan(&placing, &pending, &repaying)
	if err != nil {
		return false, "", err
	}
	if placing+pending+repaying > 0 {
		why = append(why, fmt.Sprintf("%d placing, %d refunds pending, %d re-payments unfinished", placing, pending, repaying))
	}
	if n := w.pg.pendingWebhooks(); n > 0 {
		why = append(why, fmt.Sprintf("%d webhooks pending", n))
	}
	// Reconciliation has caught up: no bill is open or given up on here
	// that the PG holds final.
	rows, err := w.db.Pool.Query(ctx, `SELECT bill_id FROM bills WHERE status IN ('requested', 'abandoned') ORDER BY bill_id`)
	if err != nil {
		return false, "", err
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return false, "", err
	}
	pgBills := w.pg.Bills()
	behind := 0
	for _, id := range ids {
		if p, ok := pgBills[id]; ok && p.Status != pgclient.StatusRequested {
			behind++
		}
	}
	if behind > 0 {
		why = append(why, fmt.Sprintf("%d bills final at the PG, not yet here", behind))
	}
	if n := w.pg.inFlight(); n > 0 {
		why = append(why, fmt.Sprintf("%d PG requests in flight", n))
	}
	sort.Strings(why)
	return len(why) == 0, strings.Join(why, "; "), nil
}
