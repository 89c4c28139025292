package outbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.opentelemetry.io/otel/propagation"
)

// Publisher delivers a batch of messages, in slice order per key, and
// returns only when all are acknowledged. The Kafka implementation is in
// package producer.
type Publisher interface {
	Publish(ctx context.Context, msgs []Message) error
}

// lockKey is the advisory lock that makes one relay the publisher among all
// payflow instances sharing a database (the others stand by).
const lockKey int64 = 0x7061796f75746278 // "payoutbx"

// Relay publishes unpublished outbox rows.
type Relay struct {
	Pool      *pgxpool.Pool
	Publisher Publisher
	Logger    *slog.Logger
	// BatchSize is the most rows published in one Kafka write.
	BatchSize int
	// PollInterval is the fallback when a notification is missed (another
	// instance's commit, a dropped LISTEN connection).
	PollInterval time.Duration
	// PublishTimeout bounds one batch: a Kafka write that never returns
	// must not stall the relay forever.
	PublishTimeout time.Duration
	// Observer, when set, hears each publication, for metrics and
	// tracing. Nil: the stored trace context is passed on unchanged.
	Observer Observer
	// Retention is how long published rows are kept (for audits and the
	// invariant checker) before the leading relay deletes them; default 7
	// days, negative keeps them forever.
	Retention time.Duration

	lastPrune time.Time
	wakeOnce  sync.Once
	wake      chan struct{}
	leading   atomic.Bool
}

// Observer hears what the relay does. As every payflow observer, a method
// that returns a context and a func starts something (a span, a clock):
// the work goes on with that context, and the func is called once, with
// how it ended.
type Observer interface {
	// Publish starts the publication of m, a row stored with a trace
	// context; ctx carries that context as its parent. The message is
	// sent with the trace context of the returned one, so the event
	// continues the trace of the request that caused it. end is told the
	// outcome of the batch m is in.
	Publish(ctx context.Context, m Message) (_ context.Context, end func(error))
	// Published is told, for each row the broker acknowledged, how long it
	// waited between its commit and its publication.
	Published(lag time.Duration)
}

type noObserver struct{}

func (noObserver) Publish(ctx context.Context, _ Message) (context.Context, func(error)) {
	return ctx, func(error) {}
}
func (noObserver) Published(time.Duration) {}

// Leading reports whether this relay holds the publisher lock now: true in
// exactly one process among those sharing the database (none while the lock
// changes hands). Figures about the whole database, the same from every
// process (the outbox backlog, stuck charges), are reported by the leader
// only, so that they are not counted once per instance.
func (r *Relay) Leading() bool { return r.leading.Load() }

func (r *Relay) defaults() {
	if r.BatchSize <= 0 {
		r.BatchSize = 1000
	}
	if r.PollInterval <= 0 {
		r.PollInterval = 500 * time.Millisecond
	}
	if r.PublishTimeout <= 0 {
		r.PublishTimeout = 30 * time.Second
	}
	if r.Logger == nil {
		r.Logger = slog.Default()
	}
	if r.Retention == 0 {
		r.Retention = 7 * 24 * time.Hour
	}
	if r.Observer == nil {
		r.Observer = noObserver{}
	}
}

// Wake asks the relay to look for rows now. Writers in the same process call
// it after committing, which saves the round trip through NOTIFY.
func (r *Relay) Wake() {
	select {
	case r.wakeup() <- struct{}{}:
	default:
	}
}

// wakeup is the channel Wake signals, made on first use: a writer may
// commit, and Wake, before Run starts.
func (r *Relay) wakeup() chan struct{} {
	r.wakeOnce.Do(func() { r.wake = make(chan struct{}, 1) })
	return r.wake
}

// Run publishes until ctx ends. It returns nil on cancellation.
func (r *Relay) Run(ctx context.Context) error {
	r.defaults()
	b := backoff.NewExponentialBackOff()
	b.MaxInterval = 5 * time.Second
	b.MaxElapsedTime = 0 // a relay never gives up; it only waits longer
	// conn is the lock's connection. A standby keeps it between polls; any
	// other end of lead closes it, and the lock with it.
	var conn *pgx.Conn
	defer func() {
		if conn != nil {
			_ = conn.Close(context.Background())
		}
	}()
	for ctx.Err() == nil {
		var err error
		if conn == nil {
			conn, err = r.connect(ctx)
		}
		if err == nil {
			if err = r.lead(ctx, conn); !errors.Is(err, errStandby) {
				_ = conn.Close(context.Background())
				conn = nil
			}
		}
		if ctx.Err() != nil {
			return nil
		}
		wait := b.NextBackOff()
		if errors.Is(err, errStandby) {
			wait = r.PollInterval
			b.Reset()
		} else {
			r.Logger.Warn("outbox relay interrupted", "err", err, "retry_in", wait)
		}
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
	}
	return nil
}

var errStandby = errors.New("another relay holds the lock")

// connect opens the lock's connection as the pool opens its own, but out of
// the pool: it carries session state (the lock, LISTEN), and a standby
// holds it for as long as it waits. The pool's hooks (none are set) and
// connection lifetime do not apply to it.
func (r *Relay) connect(ctx context.Context) (*pgx.Conn, error) {
	conn, err := pgx.ConnectConfig(ctx, r.Pool.Config().ConnConfig)
	if err != nil {
		return nil, err
	}
	for _, set := range keepaliveSQL {
		// One at a time: in one query, a setting the server lacks
		// (tcp_user_timeout before Postgres 12) would undo the others.
		if _, err := conn.Exec(ctx, set); err != nil && ctx.Err() == nil {
			r.Logger.Warn("outbox relay: the server does not probe the lock connection; a relay host lost without a word holds the lock until the server notices", "setting", set, "err", err)
		}
	}
	return conn, nil
}

// keepaliveSQL asks the server to notice within about 40 s that the peer of
// the lock connection is gone without closing it (a node lost, a network
// partition): until the server ends that session, the lock it holds keeps
// every other relay standing by, and no result is published. With the
// operating system's defaults that is two hours (keepalive) or a quarter
// of an hour (unacknowledged data). The settings are the session's own.
var keepaliveSQL = []string{
	"SET tcp_keepalives_idle = 20",
	"SET tcp_keepalives_interval = 5",
	"SET tcp_keepalives_count = 4",
	"SET tcp_user_timeout = 40000",
}

// lead takes the publisher lock on conn and publishes while it holds it.
// The lock dies with the connection, so a crashed relay hands over to a
// standby at once.
func (r *Relay) lead(ctx context.Context, raw *pgx.Conn) error {
	// Bounded, as a standby keeps its connection: one that died without a
	// word (a host gone, a NAT that forgot it) would hold the query until
	// TCP gives up, and the standby could not take over meanwhile. On the
	// timeout Run opens another.
	lctx, cancel := context.WithTimeout(ctx, 4*r.PollInterval)
	var got bool
	err := raw.QueryRow(lctx, "SELECT pg_try_advisory_lock($1)", lockKey).Scan(&got)
	cancel()
	if err != nil {
		return err
	}
	if !got {
		return errStandby
	}
	if _, err := raw.Exec(ctx, "LISTEN "+Channel); err != nil {
		return err
	}
	r.leading.Store(true)
	defer r.leading.Store(false)
	r.Logger.Info("outbox relay publishing")
	err = r.publishWhileLeading(ctx, raw)
	if ctx.Err() != nil {
		r.lastPass(ctx, raw)
	}
	return err
}

// lastPassTimeout bounds the pass a stopping leader makes over what is
// left.
const lastPassTimeout = 10 * time.Second

// lastPass publishes what is left when the leader is told to stop, while it
// still holds the lock: the requests in flight when payflow began to stop
// wrote results that should not wait for the next relay. Only the leader
// makes it: a standby's pass would send the rows the leader is sending.
func (r *Relay) lastPass(ctx context.Context, lock *pgx.Conn) {
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), lastPassTimeout)
	defer cancel()
	if err := lock.Ping(pctx); err != nil {
		r.Logger.Warn("outbox relay lost its lock before its last pass; the next relay publishes the rest", "err", err)
		return
	}
	for {
		n, err := r.PublishBatch(pctx)
		if err != nil {
			r.Logger.Warn("last outbox pass incomplete; the next relay publishes the rest", "err", err)
			return
		}
		if n == 0 {
			return
		}
	}
}

// publishWhileLeading publishes until ctx ends or the lock connection
// fails.
func (r *Relay) publishWhileLeading(ctx context.Context, raw *pgx.Conn) error {
	// Each round trip marks the batch published before and reads the next
	// one: with a steady flow of rows, an iteration is one read-and-mark
	// and one Kafka write.
	var published []int64
	lockSeen := time.Now()
	for {
		// The lock lives as long as its connection, which only waitForWork
		// reads, and a relay that never runs dry never waits: look at the
		// connection every poll interval, or a standby could take the lock
		// and both would publish every row. Not once told to stop: the
		// batch in flight is marked first.
		if ctx.Err() == nil && time.Since(lockSeen) > r.PollInterval {
			if err := raw.Ping(ctx); err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				return fmt.Errorf("outbox relay: lock connection lost: %w", err)
			}
			lockSeen = time.Now()
		}
		// Pruned here, not only when idle: a relay that never runs dry
		// must still prune.
		if ctx.Err() == nil && time.Since(r.lastPrune) > 10*time.Minute {
			r.lastPrune = time.Now()
			if _, err := r.Prune(ctx); err != nil {
				r.Logger.Warn("outbox prune failed", "err", err)
			}
		}
		// A Wake sent before this read is answered by it: drop it, or
		// the wait after an empty read would end at once for nothing.
		select {
		case <-r.wakeup():
		default:
		}
		if ctx.Err() != nil && len(published) == 0 {
			return ctx.Err()
		}
		// The round trip that marks a batch the broker acknowledged is
		// not cut short by a stop: an unmarked batch would be published
		// again by the last pass at shutdown or by the next relay.
		mctx, cancel := afterStop(ctx, stopGrace)
		b, err := r.markAndRead(mctx, published)
		cancel()
		if err != nil {
			return err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		published = nil
		if len(b.msgs) > 0 {
			// Nor is a publication in flight: abandoned, it may still
			// reach the broker, and would be sent again.
			pctx, cancel := afterStop(ctx, stopGrace)
			err := r.publish(pctx, b)
			cancel()
			if err != nil {
				return err
			}
			published = b.ids
			continue
		}
		if err := r.waitForWork(ctx, raw); err != nil {
			return err
		}
	}
}

// waitForWork returns on a notification, a Wake or the poll interval, and
// with an error when the lock connection broke (the lock is gone with it).
//
// It returns only once its listener for Wake has stopped: a listener left
// behind by a wait that ended otherwise (a NOTIFY, the poll) could take a
// Wake sent after the next read began, and the row it announced would wait
// for the poll.
func (r *Relay) waitForWork(ctx context.Context, conn *pgx.Conn) error {
	wctx, cancel := context.WithTimeout(ctx, r.PollInterval)
	defer cancel()
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		select {
		case <-r.wakeup():
			cancel()
		case <-wctx.Done():
		}
	}()
	_, err := conn.WaitForNotification(wctx)
	ended := wctx.Err() // the poll or a Wake ended the wait, not the connection
	cancel()
	<-stopped
	switch {
	case ctx.Err() != nil:
		return ctx.Err()
	case conn.IsClosed():
		return fmt.Errorf("outbox relay: lock connection lost: %v", err)
	case err != nil && ended == nil:
		return err
	}
	return nil
}

// PublishBatch publishes up to BatchSize unpublished rows in id order and
// marks them published. It returns how many it published. Rows are marked
// only after the publisher acknowledged them all, so a crash in between
// publishes them again (consumers dedupe by event id) and loses none.
func (r *Relay) PublishBatch(ctx context.Context) (int, error) {
	r.defaults()
	b, err := r.markAndRead(ctx, nil)
	if err != nil || len(b.msgs) == 0 {
		return 0, err
	}
	if err := r.publish(ctx, b); err != nil {
		return 0, err
	}
	if _, err := r.Pool.Exec(ctx, markSQL, b.ids); err != nil {
		return 0, fmt.Errorf("outbox: mark published: %w", err)
	}
	return len(b.msgs), nil
}

// stopGrace is how long the publication and the mark in flight may still
// take once the relay is told to stop.
const stopGrace = 5 * time.Second

// afterStop is a context that ends grace after ctx does, rather than with
// it.
func afterStop(ctx context.Context, grace time.Duration) (context.Context, context.CancelFunc) {
	gctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	stop := context.AfterFunc(ctx, func() { time.AfterFunc(grace, cancel) })
	return gctx, func() { stop(); cancel() }
}

const (
	readSQL = `SELECT id, event_id::text, topic, key, value, coalesce(traceparent, ''), coalesce(tracestate, ''), created_at FROM outbox
		 WHERE published_at IS NULL ORDER BY id LIMIT $1`
	markSQL = `UPDATE outbox SET published_at = now() WHERE id = ANY($1)`
)

// batch is a read of unpublished rows, in id order.
type batch struct {
	ids     []int64
	msgs    []Message
	created []time.Time
}

// markAndRead marks the rows of ids published, if any, and reads the next
// batch, in one round trip. The two statements share the round trip's
// implicit transaction: if Postgres fails the read, the mark is undone too,
// and those rows are published again (consumers dedupe by event id). An
// error after the commit (a lost answer, a row that does not scan) leaves
// the mark in place, which is as right: ids are only rows the broker
// acknowledged.
func (r *Relay) markAndRead(ctx context.Context, ids []int64) (batch, error) {
	var q pgx.Batch
	if len(ids) > 0 {
		q.Queue(markSQL, ids)
	}
	q.Queue(readSQL, r.BatchSize)
	res := r.Pool.SendBatch(ctx, &q)
	defer res.Close()
	if len(ids) > 0 {
		if _, err := res.Exec(); err != nil {
			return batch{}, fmt.Errorf("outbox: mark published: %w", err)
		}
	}
	rows, err := res.Query()
	if err != nil {
		return batch{}, fmt.Errorf("outbox: read: %w", err)
	}
	var b batch
	for rows.Next() {
		var (
			id int64
			m  Message
			at time.Time
		)
		if err := rows.Scan(&id, &m.EventID, &m.Topic, &m.Key, &m.Value, &m.TraceParent, &m.TraceState, &at); err != nil {
			rows.Close()
			return batch{}, fmt.Errorf("outbox: read: %w", err)
		}
		b.ids, b.msgs, b.created = append(b.ids, id), append(b.msgs, m), append(b.created, at)
	}
	if err := rows.Err(); err != nil {
		return batch{}, fmt.Errorf("outbox: read: %w", err)
	}
	if err := res.Close(); err != nil {
		return batch{}, fmt.Errorf("outbox: read: %w", err)
	}
	return b, nil
}

// publish writes a batch to the publisher and tells the observer how long
// each row waited: a row is published once the publisher acknowledged it,
// whether or not it is marked yet.
func (r *Relay) publish(ctx context.Context, b batch) error {
	ends := r.startPublish(ctx, b.msgs)
	pctx, cancel := context.WithTimeout(ctx, r.PublishTimeout)
	err := r.Publisher.Publish(pctx, b.msgs)
	cancel()
	for _, end := range ends {
		end(err)
	}
	if err != nil {
		return fmt.Errorf("outbox: publish %d events: %w", len(b.msgs), err)
	}
	now := time.Now()
	for _, at := range b.created {
		r.Observer.Published(now.Sub(at))
	}
	return nil
}

// startPublish tells the observer of the publication of each message
// stored with a trace context, and gives the message the context the
// observer returns (its span's), so the published event continues the
// trace of the request that caused it.
func (r *Relay) startPublish(ctx context.Context, msgs []Message) []func(error) {
	var ends []func(error)
	prop := propagation.TraceContext{}
	for i := range msgs {
		m := &msgs[i]
		if m.TraceParent == "" {
			continue
		}
		c := propagation.MapCarrier{"traceparent": m.TraceParent}
		if m.TraceState != "" {
			c["tracestate"] = m.TraceState
		}
		pctx, end := r.Observer.Publish(prop.Extract(ctx, c), *m)
		out := propagation.MapCarrier{}
		prop.Inject(pctx, out)
		m.TraceParent, m.TraceState = out["traceparent"], out["tracestate"]
		ends = append(ends, end)
	}
	return ends
}

// Prune deletes rows published longer ago than Retention, at most 10,000 at
// a time so it never holds long locks. Unpublished rows are never touched.
func (r *Relay) Prune(ctx context.Context) (int64, error) {
	r.defaults()
	if r.Retention < 0 {
		return 0, nil
	}
	tag, err := r.Pool.Exec(ctx, `DELETE FROM outbox WHERE id IN (
		SELECT id FROM outbox WHERE published_at < now() - $1::interval LIMIT 10000)`, r.Retention)
	if err != nil {
		return 0, err
	}
	return tag.RowsAffected(), nil
}
