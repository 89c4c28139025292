package outbox_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.opentelemetry.io/otel/trace"

	"github.com/payflow/payflow/events"
	"github.com/payflow/payflow/internal/testdb"
	"github.com/payflow/payflow/internal/testnet"
	"github.com/payflow/payflow/outbox"
	"github.com/payflow/payflow/store"
)

// recorder is a Publisher that remembers what it published.
type recorder struct {
	mu   sync.Mutex
	got  []outbox.Message
	fail int // fail this many Publish calls first
}

func (r *recorder) Publish(_ context.Context, msgs []outbox.Message) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail > 0 {
		r.fail--
		return fmt.Errorf("broker down")
	}
	r.got = append(r.got, msgs...)
	return nil
}

func (r *recorder) ids() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]string, len(r.got))
	for i, m := range r.got {
		out[i] = string(m.Value)
	}
	return out
}

func msg(key, value string) outbox.Message {
	return outbox.Message{EventID: events.ID(key, value), Topic: events.TopicEvents, Key: []byte(key), Value: []byte(value)}
}

func TestInsertIgnoresTheSameEventTwice(t *testing.T) {
	db := testdb.Pool(t)
	ctx := context.Background()
	for i := 0; i < 2; i++ {
		if err := outbox.Insert(ctx, db, msg("c1", "processed")); err != nil {
			t.Fatal(err)
		}
	}
	var n int
	if err := db.QueryRow(ctx, "SELECT count(*) FROM outbox").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Fatalf("outbox rows = %d, want 1", n)
	}
}

func TestPublishBatchPublishesInOrderAndMarks(t *testing.T) {
	db := testdb.Pool(t)
	ctx := context.Background()
	for i := 0; i < 5; i++ {
		if err := outbox.Insert(ctx, db, msg("c1", fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	pub := &recorder{fail: 1}
	r := &outbox.Relay{Pool: db, Publisher: pub, BatchSize: 3}
	if _, err := r.PublishBatch(ctx); err == nil {
		t.Fatal("publish failure was not reported")
	}
	// A failed publish marks nothing: the rows are still there to retry.
	for {
		n, err := r.PublishBatch(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			break
		}
	}
	if got := fmt.Sprint(pub.ids()); got != "[0 1 2 3 4]" {
		t.Fatalf("published %s, want [0 1 2 3 4]", got)
	}
	var unpublished int
	_ = db.QueryRow(ctx, "SELECT count(*) FROM outbox WHERE published_at IS NULL").Scan(&unpublished)
	if unpublished != 0 {
		t.Fatalf("%d rows left unpublished", unpublished)
	}
}

// A transaction that takes its id early and commits late must not be
// skipped (the bug of relays that track "the last published id").
func TestRelayDoesNotSkipALateCommit(t *testing.T) {
	db := testdb.Pool(t)
	ctx := context.Background()
	late, err := db.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer late.Rollback(ctx)
	if err := outbox.Insert(ctx, late, msg("a", "early-id-late-commit")); err != nil {
		t.Fatal(err)
	}
	if err := outbox.Insert(ctx, db, msg("b", "late-id-early-commit")); err != nil {
		t.Fatal(err)
	}
	pub := &recorder{}
	r := &outbox.Relay{Pool: db, Publisher: pub}
	if _, err := r.PublishBatch(ctx); err != nil {
		t.Fatal(err)
	}
	if err := late.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := r.PublishBatch(ctx); err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(pub.ids()); got != "[late-id-early-commit early-id-late-commit]" {
		t.Fatalf("published %s", got)
	}
}

// The relays run in other processes than the writer: only the NOTIFY can
// wake them before their (here, one-minute) poll.
func TestRelayRunWakesOnNotifyAndOnlyOneLeads(t *testing.T) {
	db := testdb.Pool(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pubA, pubB := &recorder{}, &recorder{}
	// A long poll interval: delivery within the deadline below proves the
	// relay woke on NOTIFY, not on its timer.
	a := &outbox.Relay{Pool: db, Publisher: pubA, PollInterval: time.Minute}
	b := &outbox.Relay{Pool: db, Publisher: pubB, PollInterval: time.Minute}
	go a.Run(ctx)
	waitFor(t, "a to lead", a.Leading)
	go b.Run(ctx)
	time.Sleep(100 * time.Millisecond)
	if err := pgx.BeginFunc(ctx, db, func(tx pgx.Tx) error { return outbox.Insert(ctx, tx, msg("c", "x")) }); err != nil {
		t.Fatal(err)
	}
	n := outbox.NewNotifier(db)
	go n.Run(ctx)
	n.Signal()
	deadline := time.Now().Add(10 * time.Second)
	for len(pubA.ids())+len(pubB.ids()) == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if len(pubA.ids()) != 1 || len(pubB.ids()) != 0 {
		t.Fatalf("leader published %d, standby %d; want 1 and 0", len(pubA.ids()), len(pubB.ids()))
	}
	if !a.Leading() || b.Leading() {
		t.Fatalf("Leading: a %v, b %v; want true, false", a.Leading(), b.Leading())
	}
}

// Leadership moves when the leader stops, and Leading follows it: the
// process that reports the database-wide gauges changes with it.
func TestLeadingFollowsTheLock(t *testing.T) {
	db := testdb.Pool(t)
	ctx := context.Background()
	actx, stopA := context.WithCancel(ctx)
	bctx, stopB := context.WithCancel(ctx)
	defer stopB()
	a := &outbox.Relay{Pool: db, Publisher: &recorder{}, PollInterval: 50 * time.Millisecond}
	b := &outbox.Relay{Pool: db, Publisher: &recorder{}, PollInterval: 50 * time.Millisecond}
	aDone := make(chan struct{})
	go func() { defer close(aDone); _ = a.Run(actx) }()
	waitFor(t, "a to lead", a.Leading)
	go b.Run(bctx)
	time.Sleep(300 * time.Millisecond)
	if b.Leading() {
		t.Fatal("both relays lead")
	}
	stopA()
	<-aDone
	if a.Leading() {
		t.Fatal("a stopped and still reports leading")
	}
	waitFor(t, "b to take over", b.Leading)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestPruneDeletesOnlyOldPublishedRows(t *testing.T) {
	db := testdb.Pool(t)
	ctx := context.Background()
	for _, v := range []string{"old-published", "new-published", "old-unpublished"} {
		if err := outbox.Insert(ctx, db, msg("c", v)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := db.Exec(ctx, `UPDATE outbox SET published_at = now() - interval '8 days' WHERE value = 'old-published';
		UPDATE outbox SET published_at = now() WHERE value = 'new-published';
		UPDATE outbox SET created_at = now() - interval '30 days' WHERE value = 'old-unpublished'`); err != nil {
		t.Fatal(err)
	}
	r := &outbox.Relay{Pool: db, Publisher: &recorder{}}
	n, err := r.Prune(ctx)
	if err != nil || n != 1 {
		t.Fatalf("pruned %d, %v; want 1", n, err)
	}
	var left []string
	rows, _ := db.Query(ctx, "SELECT convert_from(value, 'UTF8') FROM outbox ORDER BY id")
	for rows.Next() {
		var v string
		_ = rows.Scan(&v)
		left = append(left, v)
	}
	if fmt.Sprint(left) != "[new-published old-unpublished]" {
		t.Fatalf("left %v", left)
	}
}

// publications is an Observer that records what it hears, and gives each
// publication a span of its own in the stored trace.
type publications struct {
	mu      sync.Mutex
	parents []trace.SpanContext
	ends    []error
	lags    int
}

var publishSpan = trace.SpanID{0xb, 0xb, 0xb, 0xb, 0xb, 0xb, 0xb, 0xb}

func (p *publications) Publish(ctx context.Context, _ outbox.Message) (context.Context, func(error)) {
	parent := trace.SpanContextFromContext(ctx)
	p.mu.Lock()
	p.parents = append(p.parents, parent)
	p.mu.Unlock()
	own := parent.WithSpanID(publishSpan).WithRemote(false)
	return trace.ContextWithSpanContext(ctx, own), func(err error) {
		p.mu.Lock()
		defer p.mu.Unlock()
		p.ends = append(p.ends, err)
	}
}

func (p *publications) Published(time.Duration) { p.mu.Lock(); defer p.mu.Unlock(); p.lags++ }

// The observer hears the publication of each row stored with a trace
// context, as a child of that context, and the message carries the context
// the observer returned; each row marked published is told once.
func TestObserverHearsEachPublication(t *testing.T) {
	db := testdb.Pool(t)
	writer := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16},
		SpanID:  trace.SpanID{1, 1, 1, 1, 1, 1, 1, 1}, TraceFlags: trace.FlagsSampled,
	})
	if err := outbox.Insert(trace.ContextWithSpanContext(context.Background(), writer), db, msg("c1", "traced")); err != nil {
		t.Fatal(err)
	}
	if err := outbox.Insert(context.Background(), db, msg("c2", "untraced")); err != nil {
		t.Fatal(err)
	}
	pub, obs := &recorder{fail: 1}, &publications{}
	r := &outbox.Relay{Pool: db, Publisher: pub, Observer: obs}
	ctx := context.Background()
	if _, err := r.PublishBatch(ctx); err == nil {
		t.Fatal("publish failure was not reported")
	}
	if n, err := r.PublishBatch(ctx); err != nil || n != 2 {
		t.Fatalf("PublishBatch = %d, %v", n, err)
	}
	obs.mu.Lock()
	defer obs.mu.Unlock()
	if len(obs.parents) != 2 || !obs.parents[0].Equal(writer.WithRemote(true)) || !obs.parents[1].Equal(writer.WithRemote(true)) {
		t.Fatalf("publications heard with parents %v, want the writer's span twice (one failed attempt, one success)", obs.parents)
	}
	if len(obs.ends) != 2 || obs.ends[0] == nil || obs.ends[1] != nil {
		t.Fatalf("publications ended with %v, want the failure, then nil", obs.ends)
	}
	if obs.lags != 2 {
		t.Fatalf("Published heard %d times, want once per row", obs.lags)
	}
	want := "00-0102030405060708090a0b0c0d0e0f10-0b0b0b0b0b0b0b0b-01"
	if got := pub.got[0].TraceParent; got != want {
		t.Fatalf("published with traceparent %q, want the observer's span %q", got, want)
	}
	if got := pub.got[1].TraceParent; got != "" {
		t.Fatalf("a row without a trace context published with %q", got)
	}
}

// statements counts the statements a pool sends.
type statements struct {
	mu  sync.Mutex
	sql []string
}

func (s *statements) TraceQueryStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sql = append(s.sql, d.SQL)
	return ctx
}

func (s *statements) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

func (s *statements) TraceBatchStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchStartData) context.Context {
	return ctx
}

// TraceBatchQuery records a statement sent in a batch with the prefix
// "batch: ".
func (s *statements) TraceBatchQuery(_ context.Context, _ *pgx.Conn, d pgx.TraceBatchQueryData) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sql = append(s.sql, "batch: "+d.SQL)
}

func (s *statements) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData) {}

func (s *statements) take() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.sql
	s.sql = nil
	return out
}

// insertDuring is a Publisher that commits another row while it publishes,
// as a worker does while the relay waits for the broker.
type insertDuring struct {
	recorder
	db *pgxpool.Pool
}

func (p *insertDuring) Publish(ctx context.Context, msgs []outbox.Message) error {
	if err := outbox.Insert(ctx, p.db, msg("c9", "committed-while-publishing")); err != nil {
		return err
	}
	return p.recorder.Publish(ctx, msgs)
}

// A batch is read in one statement and marked in one, however many rows it
// holds, and the mark covers exactly the rows published: not a row
// committed while they were.
func TestPublishBatchMarksInOneStatementOnlyWhatItPublished(t *testing.T) {
	ctx := context.Background()
	db, sent := tracedPool(t)
	for i := 0; i < 50; i++ {
		if err := outbox.Insert(ctx, db, msg(fmt.Sprint("c", i%7), fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	pub := &insertDuring{db: db}
	r := &outbox.Relay{Pool: db, Publisher: pub, BatchSize: 100}
	sent.take()
	n, err := r.PublishBatch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n != 50 {
		t.Fatalf("published %d rows, want 50", n)
	}
	var relaySQL []string
	for _, s := range sent.take() {
		if s != outbox.InsertSQL { // the publisher's own insert
			relaySQL = append(relaySQL, strings.TrimPrefix(s, "batch: "))
		}
	}
	if len(relaySQL) != 2 {
		t.Fatalf("a batch of 50 rows took %d statements, want 2 (read, mark):\n%s", len(relaySQL), strings.Join(relaySQL, "\n"))
	}
	var published, unpublished int
	if err := db.QueryRow(ctx, `SELECT count(*) FILTER (WHERE published_at IS NOT NULL), count(*) FILTER (WHERE published_at IS NULL) FROM outbox`).
		Scan(&published, &unpublished); err != nil {
		t.Fatal(err)
	}
	if published != 50 || unpublished != 1 {
		t.Fatalf("%d rows marked published and %d left, want 50 and the 1 committed during the publish", published, unpublished)
	}
}

// notifies counts the NOTIFYs a Notifier sends.
type notifies struct{ n atomic.Int32 }

func (c *notifies) Exec(context.Context, string, ...any) (pgconn.CommandTag, error) {
	c.n.Add(1)
	return pgconn.CommandTag{}, nil
}

// Only the leading relay listens: while it is this process's (woken by
// Relay.Wake), a NOTIFY would wake nobody, and none is sent.
func TestNotifierIsQuietWhileThisProcessLeads(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var leading atomic.Bool
	db := &notifies{}
	n := outbox.NewNotifier(db)
	n.Leading = leading.Load
	go n.Run(ctx)
	leading.Store(true)
	n.Signal()
	time.Sleep(100 * time.Millisecond)
	if got := db.n.Load(); got != 0 {
		t.Fatalf("%d NOTIFYs sent while this process's relay leads, want 0", got)
	}
	leading.Store(false)
	n.Signal()
	waitFor(t, "a NOTIFY once another process's relay leads", func() bool { return db.n.Load() == 1 })
}

// A writer in the leading relay's process wakes it with Wake alone (its
// Notifier stays quiet): every row so announced is published at once, the
// poll being a minute away, also while NOTIFYs from other processes end
// the relay's waits.
func TestRelayPublishesOnWakeAlone(t *testing.T) {
	db := testdb.Pool(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pub := &recorder{}
	r := &outbox.Relay{Pool: db, Publisher: pub, PollInterval: time.Minute}
	go r.Run(ctx)
	waitFor(t, "the relay to lead", r.Leading)
	for i := 0; i < 200; i++ {
		// A NOTIFY from another process ends the relay's wait; a row
		// committed here at the same moment is announced by Wake alone.
		if err := outbox.Notify(ctx, db); err != nil {
			t.Fatal(err)
		}
		if err := outbox.Insert(ctx, db, msg("c", fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
		r.Wake()
		deadline := time.Now().Add(5 * time.Second)
		for len(pub.ids()) < i+1 {
			if time.Now().After(deadline) {
				t.Fatalf("row %d was announced by Wake and not published within 5s", i)
			}
			time.Sleep(time.Millisecond)
		}
	}
}

// tracedPool is a migrated database whose statements are recorded.
func tracedPool(t *testing.T) (*pgxpool.Pool, *statements) {
	t.Helper()
	ctx := context.Background()
	dsn := testdb.NewDSN(t)
	if err := store.Migrate(ctx, dsn); err != nil {
		t.Fatal(err)
	}
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	sent := &statements{}
	cfg.ConnConfig.Tracer = sent
	db, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	return db, sent
}

// flow is a Publisher that commits a new row during each of its first
// rows publications, and wakes the relay as a writer in its process does:
// the relay never finds the outbox empty until then.
type flow struct {
	recorder
	db    *pgxpool.Pool
	rows  atomic.Int32
	relay *outbox.Relay
}

func (f *flow) Publish(ctx context.Context, msgs []outbox.Message) error {
	if n := f.rows.Add(-1); n >= 0 {
		if err := outbox.Insert(ctx, f.db, msg("c", fmt.Sprint("flow-", n))); err != nil {
			return err
		}
		f.relay.Wake()
	}
	return f.recorder.Publish(ctx, msgs)
}

func unpublished(t *testing.T, db *pgxpool.Pool) int {
	t.Helper()
	var n int
	if err := db.QueryRow(context.Background(), "SELECT count(*) FROM outbox WHERE published_at IS NULL").Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// While rows keep coming, each relay iteration costs one round trip to
// Postgres, not two: the mark of the batch just published travels with the
// read of the next.
func TestRelayMarksEachBatchWithTheNextRead(t *testing.T) {
	db, sent := tracedPool(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := outbox.Insert(ctx, db, msg("c", "first")); err != nil {
		t.Fatal(err)
	}
	pub := &flow{db: db}
	pub.rows.Store(5)
	r := &outbox.Relay{Pool: db, Publisher: pub, PollInterval: time.Minute}
	pub.relay = r
	done := make(chan struct{})
	go func() { defer close(done); _ = r.Run(ctx) }()
	waitFor(t, "six rows published and marked", func() bool { return len(pub.ids()) == 6 && unpublished(t, db) == 0 })
	time.Sleep(50 * time.Millisecond) // the last round trip's answer read; then the relay waits a minute
	statements := sent.take()         // before the stop, whose last pass reads once more
	cancel()
	<-done
	var standalone, batchedMarks, batchedReads int
	for _, s := range statements {
		rest, batched := strings.CutPrefix(s, "batch: ")
		mark, read := strings.HasPrefix(rest, "UPDATE outbox SET published_at"), strings.HasPrefix(rest, "SELECT id, event_id")
		switch {
		case (mark || read) && !batched:
			standalone++
		case mark:
			batchedMarks++
		case read:
			batchedReads++
		}
	}
	if standalone != 0 || batchedMarks != 6 || batchedReads != 7 {
		t.Fatalf("%d standalone reads or marks, %d marks and %d reads in round trips; want 0, 6 (one per batch) and 7 (the last finds nothing)", standalone, batchedMarks, batchedReads)
	}
}

// A relay that never finds the outbox empty still prunes.
func TestRelayPrunesWhileRowsKeepComing(t *testing.T) {
	db, _ := tracedPool(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := outbox.Insert(ctx, db, msg("c", "old-published")); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(ctx, `UPDATE outbox SET published_at = now() - interval '8 days'`); err != nil {
		t.Fatal(err)
	}
	if err := outbox.Insert(ctx, db, msg("c", "first")); err != nil {
		t.Fatal(err)
	}
	pub := &flow{db: db}
	pub.rows.Store(1 << 30)
	r := &outbox.Relay{Pool: db, Publisher: pub, PollInterval: time.Minute}
	pub.relay = r
	done := make(chan struct{})
	go func() { defer close(done); _ = r.Run(ctx) }()
	defer func() { pub.rows.Store(0); cancel(); <-done }() // no more rows: the last pass ends
	waitFor(t, "the old row pruned", func() bool {
		var n int
		_ = db.QueryRow(ctx, "SELECT count(*) FROM outbox WHERE value = 'old-published'").Scan(&n)
		return n == 0
	})
	if unpublished(t, db) == 0 {
		t.Fatal("the outbox ran dry: the test did not keep rows coming")
	}
}

// cancelAfter is a Publisher that, once the broker has its messages, tells
// the relay to stop: a shutdown that lands between a publication and its
// mark.
type cancelAfter struct {
	recorder
	cancel context.CancelFunc
}

func (p *cancelAfter) Publish(ctx context.Context, msgs []outbox.Message) error {
	err := p.recorder.Publish(ctx, msgs)
	p.cancel()
	return err
}

// A relay told to stop right after the broker acknowledged a batch still
// marks it: otherwise the last pass at shutdown (or the next relay) would
// publish it a second time.
func TestRelayMarksWhatItPublishedWhenToldToStop(t *testing.T) {
	db := testdb.Pool(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := outbox.Insert(ctx, db, msg("c", "acknowledged-then-stop")); err != nil {
		t.Fatal(err)
	}
	pub := &cancelAfter{cancel: cancel}
	// A short poll: the lock's ping is due when the stop comes.
	r := &outbox.Relay{Pool: db, Publisher: pub, PollInterval: time.Millisecond}
	if err := r.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if len(pub.ids()) != 1 {
		t.Fatalf("published %v, want the one row", pub.ids())
	}
	if n := unpublished(t, db); n != 0 {
		t.Fatalf("%d rows left unmarked after their publication: the last pass would publish them again", n)
	}
}

// lockHolder is the backend holding the relays' advisory lock in db's
// database, 0 for none.
func lockHolder(t *testing.T, db *pgxpool.Pool) int {
	t.Helper()
	var pid int
	err := db.QueryRow(context.Background(), `SELECT coalesce(max(pid), 0) FROM pg_locks
		WHERE locktype = 'advisory' AND granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`).Scan(&pid)
	if err != nil {
		t.Fatal(err)
	}
	return pid
}

// A relay whose lock connection dies notices it even while rows keep
// coming, and takes the lock again before it publishes more: otherwise a
// standby would take the lock and both would publish every row.
func TestRelayNoticesItsLockIsGoneWhileRowsKeepComing(t *testing.T) {
	db, _ := tracedPool(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := outbox.Insert(ctx, db, msg("c", "first")); err != nil {
		t.Fatal(err)
	}
	pub := &flow{db: db}
	pub.rows.Store(1 << 30)
	r := &outbox.Relay{Pool: db, Publisher: pub, PollInterval: 50 * time.Millisecond}
	pub.relay = r
	done := make(chan struct{})
	go func() { defer close(done); _ = r.Run(ctx) }()
	defer func() { pub.rows.Store(0); cancel(); <-done }() // no more rows: the last pass ends
	waitFor(t, "the relay to lead", func() bool { return lockHolder(t, db) != 0 && len(pub.ids()) > 10 })
	first := lockHolder(t, db)
	if _, err := db.Exec(ctx, "SELECT pg_terminate_backend($1)", first); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the lock taken again on a new connection", func() bool {
		h := lockHolder(t, db)
		return h != 0 && h != first
	})
	if unpublished(t, db) == 0 {
		t.Fatal("the outbox ran dry: the test did not keep rows coming")
	}
}

// A row's lag starts when the row is written, not when its transaction
// began: a group-commit flush's earlier statements are the worker's
// latency, not the relay's.
func TestARowIsDatedWhenWritten(t *testing.T) {
	db := testdb.Pool(t)
	ctx := context.Background()
	var began time.Time
	if err := pgx.BeginFunc(ctx, db, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, "SELECT now()").Scan(&began); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, "SELECT pg_sleep(0.05)"); err != nil {
			return err
		}
		return outbox.Insert(ctx, tx, msg("c", "late-in-its-transaction"))
	}); err != nil {
		t.Fatal(err)
	}
	var created time.Time
	if err := db.QueryRow(ctx, "SELECT created_at FROM outbox").Scan(&created); err != nil {
		t.Fatal(err)
	}
	if d := created.Sub(began); d < 50*time.Millisecond {
		t.Fatalf("created_at is %v after its transaction began, want at least the 50 ms slept before the insert", d)
	}
}

// stopDuring is a Publisher that tells the relay to stop while a
// publication is in flight and finishes it a little later, as a broker
// acknowledges a write the client sent just before the stop. Like
// kafka-go, it gives up with the context's error if its context ends first.
type stopDuring struct {
	recorder
	cancel context.CancelFunc
}

func (p *stopDuring) Publish(ctx context.Context, msgs []outbox.Message) error {
	p.cancel()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(100 * time.Millisecond):
	}
	return p.recorder.Publish(ctx, msgs)
}

// A stop lets the publication in flight finish and marks it, rather than
// abandoning a write the broker may complete anyway, which the last pass at
// shutdown would send again.
func TestRelayFinishesThePublicationInFlightWhenToldToStop(t *testing.T) {
	db := testdb.Pool(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := outbox.Insert(ctx, db, msg("c", "in-flight-at-stop")); err != nil {
		t.Fatal(err)
	}
	pub := &stopDuring{cancel: cancel}
	// A poll shorter than the publication: the lock's ping is due when
	// it ends.
	r := &outbox.Relay{Pool: db, Publisher: pub, PollInterval: 50 * time.Millisecond}
	if err := r.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if len(pub.ids()) != 1 {
		t.Fatalf("published %v, want the one row", pub.ids())
	}
	if n := unpublished(t, db); n != 0 {
		t.Fatalf("%d rows left unmarked: the last pass at shutdown would publish them again", n)
	}
}

// connects counts the connections opened with a config that carries it.
type connects struct{ n atomic.Int64 }

func (c *connects) TraceConnectStart(ctx context.Context, _ pgx.TraceConnectStartData) context.Context {
	c.n.Add(1)
	return ctx
}
func (c *connects) TraceConnectEnd(context.Context, pgx.TraceConnectEndData) {}
func (c *connects) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	return ctx
}
func (c *connects) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

// A standby relay asks for the lock every poll on one connection that it
// keeps. It used to take one of the pool's connections each time and close
// it with the lock: a server backend started and ended every poll, and a
// pool kept full at start was empty within seconds on every standby.
func TestAStandbyRelayKeepsOneConnection(t *testing.T) {
	db := testdb.Pool(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	leader := &outbox.Relay{Pool: db, Publisher: &recorder{}, PollInterval: 10 * time.Millisecond}
	leaderDone := make(chan struct{})
	go func() { defer close(leaderDone); _ = leader.Run(ctx) }()
	defer func() { cancel(); <-leaderDone }()
	waitFor(t, "the leader to lead", leader.Leading)

	cfg := db.Config()
	count := &connects{}
	cfg.ConnConfig.Tracer = count
	cfg.MaxConns = 4
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	standby := &outbox.Relay{Pool: pool, Publisher: &recorder{}, PollInterval: 10 * time.Millisecond}
	sctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = standby.Run(sctx) }()
	time.Sleep(500 * time.Millisecond) // some 50 polls
	stop()
	<-done
	if standby.Leading() {
		t.Fatal("the standby led while the leader held the lock")
	}
	if n := count.n.Load(); n != 1 {
		t.Fatalf("a standby polling for 500 ms opened %d connections; want its one lock connection", n)
	}
}

// A standby whose kept connection goes silent gives up on it within a few
// polls and opens another, so it can still take over. Without the bound,
// its lock query waits until TCP gives up, minutes later.
func TestAStandbyWhoseConnectionGoesSilentStillTakesOver(t *testing.T) {
	db := testdb.Pool(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	leader := &outbox.Relay{Pool: db, Publisher: &recorder{}, PollInterval: 50 * time.Millisecond}
	lctx, stopLeader := context.WithCancel(ctx)
	leaderDone := make(chan struct{})
	go func() { defer close(leaderDone); _ = leader.Run(lctx) }()
	defer func() { stopLeader(); <-leaderDone }()
	waitFor(t, "the leader to lead", leader.Leading)

	cfg := db.Config()
	proxy := testnet.NewSilencer(t, fmt.Sprintf("%s:%d", cfg.ConnConfig.Host, cfg.ConnConfig.Port))
	host, port, _ := net.SplitHostPort(proxy.Addr())
	cfg.ConnConfig.Host = host
	p, _ := strconv.Atoi(port)
	cfg.ConnConfig.Port = uint16(p)
	cfg.ConnConfig.Fallbacks = nil
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	standby := &outbox.Relay{Pool: pool, Publisher: &recorder{}, PollInterval: 50 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)}
	sctx, stopStandby := context.WithCancel(ctx)
	standbyDone := make(chan struct{})
	go func() { defer close(standbyDone); _ = standby.Run(sctx) }()
	defer func() { stopStandby(); <-standbyDone }()
	time.Sleep(200 * time.Millisecond) // the standby has its connection and polls on it

	proxy.Silence(true)
	time.Sleep(100 * time.Millisecond) // a poll is now stuck on the silent connection
	proxy.Silence(false)               // new connections pass again; the old one stays stuck
	stopLeader()
	<-leaderDone
	deadline := time.Now().Add(5 * time.Second)
	for !standby.Leading() {
		if time.Now().After(deadline) {
			t.Fatal("the standby has not taken over 5 s after the leader stopped: its lock query waits on a silent connection")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// endings records each statement run on connections opened with a config
// that carries it, with its error if it failed.
type endings struct {
	mu  sync.Mutex
	ran []string
}

func (s *endings) TraceQueryStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	return context.WithValue(ctx, s, d.SQL)
}

func (s *endings) TraceQueryEnd(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryEndData) {
	s.mu.Lock()
	defer s.mu.Unlock()
	line, _ := ctx.Value(s).(string)
	if d.Err != nil {
		line += " -> " + d.Err.Error()
	}
	s.ran = append(s.ran, line)
}

func (s *endings) list() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.ran...)
}

// The server notices within a minute a lock connection whose peer vanished
// without closing it: the relay asks it to probe the connection before it
// asks for the lock. With the defaults (two hours of keepalive idle) a
// relay host lost with its lock would keep every standby waiting, and
// every result unpublished, for as long.
func TestTheLockConnectionIsProbedByTheServer(t *testing.T) {
	db := testdb.Pool(t)
	cfg := db.Config()
	rec := &endings{}
	cfg.ConnConfig.Tracer = rec
	ctx, cancel := context.WithCancel(context.Background())
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	r := &outbox.Relay{Pool: pool, Publisher: &recorder{}, PollInterval: 20 * time.Millisecond}
	done := make(chan struct{})
	go func() { defer close(done); _ = r.Run(ctx) }()
	waitFor(t, "the relay to lead", r.Leading)
	cancel()
	<-done
	ran := rec.list()
	lock := -1
	set := map[string]int{}
	for i, q := range ran {
		switch {
		case strings.HasPrefix(q, "SET tcp_"):
			if strings.Contains(q, " -> ") {
				t.Fatalf("the server refused a probe setting: %s", q)
			}
			if _, ok := set[q]; !ok {
				set[q] = i
			}
		case strings.Contains(q, "pg_try_advisory_lock") && lock < 0:
			lock = i
		}
	}
	for _, name := range []string{"tcp_keepalives_idle", "tcp_keepalives_interval", "tcp_keepalives_count", "tcp_user_timeout"} {
		at := -1
		for q, i := range set {
			if strings.HasPrefix(q, "SET "+name+" ") {
				at = i
			}
		}
		if at < 0 || lock < 0 || at > lock {
			t.Fatalf("%s set at %d, lock asked at %d (want the setting first); ran:\n%s", name, at, lock, strings.Join(ran, "\n"))
		}
	}
}
