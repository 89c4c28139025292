// Package store owns payflow's Postgres schema and every query against it:
// it persists package payflow's entities (charges, bills, refunds,
// re-payments, payment methods) and webhook receipts. Each state change is
// one typed operation, guarded in SQL by the transition payflow allows;
// methods that change state take the outbox messages that report the change
// and write them in the same transaction (see package outbox).
//
// A table's queries live in the file named after it: charges.go (a charge's
// lease, placement and decline), bills.go, refunds.go, repays.go,
// methods.go (payment_methods) and rejections.go (rejected_requests).
// settle.go settles bills and lists them for reconciliation, chargeview.go
// reads a charge's history for the API, backlog.go counts unfinished work
// (the outbox included), and batch.go groups the hot path's two writes.
package store

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/tern/v2/migrate"

	"github.com/payflow/payflow/payflow"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Store is payflow's database.
type Store struct {
	Pool  *pgxpool.Pool
	clock func() time.Time
	// The hot path's writes and its read, grouped (see GroupCommit).
	creates  *groupCommitter[[]any, createResult]
	finishes *groupCommitter[[]any, struct{}]
	defaults *groupCommitter[string, *payflow.PaymentMethod]
}

// now is the time a statement takes as "now", passed as its last argument
// and read in SQL as coalesce($n::timestamptz, now()): nil, so the
// database's clock, unless Options.Clock is set.
func (s *Store) now() any {
	if s.clock == nil {
		return nil
	}
	return s.clock()
}

// Options tune the connection to Postgres. The zero value is the defaults.
type Options struct {
	// MaxConns is the size of the pool: 0 takes pool_max_conns from the
	// DSN, else DefaultMaxConns. The relay holds one more connection, out
	// of the pool, for its lock.
	MaxConns int32
	// MinConns is how many of the pool's connections open at start, in the
	// background, and stay open. 0 takes pool_min_conns from the DSN, else
	// none; FullPool takes pool_min_conns from the DSN, else all of them.
	// serve keeps a full pool: a connection opened under load starts a
	// server backend while the charges that asked for it wait, and a cold
	// pool made the first second of a run its slowest (docs/benchmarks.md).
	MinConns int32
	// ConnectTimeout bounds opening a connection, from the TCP dial to the
	// end of authentication: a server that accepts the connection and never
	// answers fails the start instead of hanging it. 0: the DSN's
	// connect_timeout, else DefaultConnectTimeout.
	ConnectTimeout time.Duration
	// StatementTimeout is the server's statement_timeout for the pool's
	// connections: a statement running longer is cancelled. It must exceed
	// any legitimate statement. 0: the DSN's statement_timeout, else
	// DefaultStatementTimeout; negative: none is set (the server's own
	// setting applies), e.g. behind a PgBouncer that refuses the parameter.
	StatementTimeout time.Duration
	// Tracer, when set, hears every statement (the simulation parks a
	// process there).
	Tracer pgx.QueryTracer
	// Clock, when set, is the time every lease, wait and timestamp is
	// measured by (the simulation's virtual clock). Nil: the database's
	// clock, one clock that every instance shares, so a lease does not
	// depend on how far the hosts' clocks drift apart.
	Clock func() time.Time
	// GroupCommit groups concurrent charges' claims and results into
	// shared transactions, and their members' default-method reads into
	// shared statements. The zero value is the defaults.
	GroupCommit GroupCommit
}

// FullPool is the MinConns of a pool that opens all its connections at
// start and keeps them.
const FullPool int32 = -1

// Defaults of Options.
const (
	DefaultMaxConns         = 32
	DefaultConnectTimeout   = 10 * time.Second
	DefaultStatementTimeout = 30 * time.Second
)

// Open connects to dsn with the default Options. It does not migrate:
// call Migrate first.
func Open(ctx context.Context, dsn string) (*Store, error) { return OpenWith(ctx, dsn, Options{}) }

// OpenWith connects to dsn and checks that the server answers within the
// connect timeout. It does not migrate: call Migrate first.
func OpenWith(ctx context.Context, dsn string, opts Options) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("store: parse DATABASE_URL: %w", err)
	}
	// pgxpool's default (max(4, cores)) starves a worker that keeps
	// hundreds of charges in flight; a DSN's pool_max_conns still wins.
	switch {
	case opts.MaxConns > 0:
		cfg.MaxConns = opts.MaxConns
	case !strings.Contains(dsn, "pool_max_conns"):
		cfg.MaxConns = DefaultMaxConns
	}
	switch {
	case opts.MinConns > 0:
		cfg.MinConns = opts.MinConns
	case opts.MinConns == FullPool && !strings.Contains(dsn, "pool_min_conns"):
		cfg.MinConns = cfg.MaxConns
	}
	cfg.MinConns = min(cfg.MinConns, cfg.MaxConns)
	timeout := connectTimeout(cfg.ConnConfig.ConnectTimeout, opts)
	cfg.ConnConfig.ConnectTimeout = timeout
	if opts.Tracer != nil {
		cfg.ConnConfig.Tracer = opts.Tracer
	}
	switch {
	case opts.StatementTimeout > 0:
		cfg.ConnConfig.RuntimeParams["statement_timeout"] = strconv.FormatInt(opts.StatementTimeout.Milliseconds(), 10)
	case opts.StatementTimeout < 0:
		delete(cfg.ConnConfig.RuntimeParams, "statement_timeout")
	case cfg.ConnConfig.RuntimeParams["statement_timeout"] == "":
		cfg.ConnConfig.RuntimeParams["statement_timeout"] = strconv.FormatInt(DefaultStatementTimeout.Milliseconds(), 10)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("store: connect: %w", err)
	}
	// The connect timeout bounds each attempt; bound them together too
	// (sslmode=prefer, several hosts), so the start fails within it.
	pctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := pool.Ping(pctx); err != nil {
		pool.Close()
		return nil, connectError(ctx, cfg.ConnConfig.Host, cfg.ConnConfig.Port, timeout, err)
	}
	if opts.GroupCommit.Timeout == 0 {
		opts.GroupCommit.Timeout = statementTimeout(cfg.ConnConfig.RuntimeParams["statement_timeout"]) + 10*time.Second
	}
	s := &Store{Pool: pool, clock: opts.Clock}
	s.creates = newGroupCommitter("create_charge", true, opts.GroupCommit, s.createOne, s.createMany)
	s.finishes = newGroupCommitter("finish_placing", true, opts.GroupCommit, s.finishOne, s.finishMany)
	s.defaults = newGroupCommitter("default_method", false, opts.GroupCommit, s.defaultOne, s.defaultMany)
	return s, nil
}

// statementTimeout is the connections' statement_timeout parameter, read
// as Postgres reads it: a whole number of milliseconds (as OpenWith sets
// it) or with one of Postgres's units (us, ms, s, min, h, d), as a DSN may
// give it. DefaultStatementTimeout when none is set (the server's own
// setting applies, which the client cannot know), it is 0 (no limit), or
// it cannot be read.
func statementTimeout(param string) time.Duration {
	units := []struct {
		suffix string
		unit   time.Duration
	}{{"us", time.Microsecond}, {"ms", time.Millisecond}, {"min", time.Minute}, {"s", time.Second}, {"h", time.Hour}, {"d", 24 * time.Hour}}
	param = strings.TrimSpace(param)
	unit := time.Millisecond
	for _, u := range units {
		if n, ok := strings.CutSuffix(param, u.suffix); ok {
			param, unit = strings.TrimSpace(n), u.unit
			break
		}
	}
	n, err := strconv.ParseInt(param, 10, 64)
	if err != nil || n <= 0 || n > int64(365*24*time.Hour/unit) {
		return DefaultStatementTimeout
	}
	return time.Duration(n) * unit
}

func connectTimeout(fromDSN time.Duration, opts Options) time.Duration {
	switch {
	case opts.ConnectTimeout > 0:
		return opts.ConnectTimeout
	case fromDSN > 0:
		return fromDSN
	}
	return DefaultConnectTimeout
}

// connectError says which server did not answer and which setting bounds
// the wait, when the connect timeout (not the caller) ended it.
func connectError(ctx context.Context, host string, port uint16, timeout time.Duration, err error) error {
	if ctx.Err() == nil && (errors.Is(err, context.DeadlineExceeded) || pgconn.Timeout(err)) {
		return fmt.Errorf("store: Postgres at %s:%d did not answer within %s (the connect timeout, PAYFLOW_DB_CONNECT_TIMEOUT): %w", host, port, timeout, err)
	}
	return fmt.Errorf("store: connect to Postgres at %s:%d: %w", host, port, err)
}

// Close releases the pool.
func (s *Store) Close() { s.Pool.Close() }

// Migrate applies the embedded schema migrations that dsn's database lacks.
// tern takes an advisory lock, so instances starting together are safe.
func Migrate(ctx context.Context, dsn string) error { return migrateTo(ctx, dsn, Options{}, -1) }

// MigrateWith is Migrate with opts' connect timeout. Migrations run without
// a statement timeout: they may wait for the lock and build indexes.
func MigrateWith(ctx context.Context, dsn string, opts Options) error {
	return migrateTo(ctx, dsn, opts, -1)
}

// migrateTo applies migrations up to version (all of them when negative).
func migrateTo(ctx context.Context, dsn string, opts Options, version int32) error {
	// The pool's parser takes the pool's settings (pool_max_conns…) out
	// of the URL; pgx's own would send them to the server, which refuses.
	pc, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return fmt.Errorf("store: migrate: parse DATABASE_URL: %w", err)
	}
	cc := pc.ConnConfig
	timeout := connectTimeout(cc.ConnectTimeout, opts)
	cc.ConnectTimeout = timeout
	cctx, cancel := context.WithTimeout(ctx, timeout)
	conn, err := pgx.ConnectConfig(cctx, cc)
	cancel()
	if err != nil {
		return fmt.Errorf("store: migrate: %w", connectError(ctx, cc.Host, cc.Port, timeout, err))
	}
	defer conn.Close(ctx)
	// Wait for tern's advisory lock by polling, so that this session holds
	// no snapshot while another instance migrates: CREATE INDEX
	// CONCURRENTLY (migration 006) waits for every older snapshot, a
	// session blocked in pg_advisory_lock included, and the two would
	// deadlock. Advisory locks nest within a session, so tern's own
	// pg_advisory_lock then returns at once.
	const ternLock = int64(9628173550095224) // tern/v2 migrate's lockNum
	for {
		var got bool
		if err := conn.QueryRow(ctx, "select pg_try_advisory_lock($1)", ternLock).Scan(&got); err != nil {
			return fmt.Errorf("store: migrate: lock: %w", err)
		}
		if got {
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
	defer conn.Exec(context.WithoutCancel(ctx), "select pg_advisory_unlock($1)", ternLock)
	m, err := migrate.NewMigrator(ctx, conn, "public.payflow_schema_version")
	if err != nil {
		return fmt.Errorf("store: migrate: %w", err)
	}
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return err
	}
	if err := m.LoadMigrations(sub); err != nil {
		return fmt.Errorf("store: migrate: load: %w", err)
	}
	if version < 0 {
		err = m.Migrate(ctx)
	} else {
		err = m.MigrateTo(ctx, version)
	}
	if err != nil {
		return fmt.Errorf("store: migrate: %w", err)
	}
	return nil
}
