package store_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/payflow/payflow/internal/testdb"
	"github.com/payflow/payflow/store"
)

// silentServer accepts TCP connections and never answers: a Postgres behind
// a broken proxy, or a port that is not Postgres at all.
func silentServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c) // held open, never read or answered
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
		for _, c := range conns {
			c.Close()
		}
	})
	return ln.Addr().String()
}

// A server that accepts and never answers fails Open and Migrate within the
// connect timeout, with an error that says so, instead of hanging them.
func TestOpenAndMigrateFailFastOnAServerThatNeverAnswers(t *testing.T) {
	dsn := "postgres://payflow@" + silentServer(t) + "/payflow" // sslmode=prefer: two attempts
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	opts := store.Options{ConnectTimeout: 500 * time.Millisecond}
	for name, try := range map[string]func() error{
		"open": func() error {
			s, err := store.OpenWith(ctx, dsn, opts)
			if err == nil {
				s.Close()
			}
			return err
		},
		"migrate": func() error { return store.MigrateWith(ctx, dsn, opts) },
	} {
		start := time.Now()
		err := try()
		took := time.Since(start)
		if err == nil {
			t.Fatalf("%s: connected to a server that never answers", name)
		}
		if took > 2*time.Second {
			t.Errorf("%s: failed after %s, want within the 500ms connect timeout", name, took)
		}
		if !strings.Contains(err.Error(), "did not answer within 500ms") || !strings.Contains(err.Error(), "PAYFLOW_DB_CONNECT_TIMEOUT") {
			t.Errorf("%s: the error does not say why: %v", name, err)
		}
	}
}

// The pool's connections carry the statement timeout: 30 s by default, and
// a statement running longer is cancelled by the server.
func TestStatementTimeout(t *testing.T) {
	dsn := testdb.NewDSN(t)
	ctx := context.Background()
	def, err := store.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer def.Close()
	var v string
	if err := def.Pool.QueryRow(ctx, "SHOW statement_timeout").Scan(&v); err != nil || v != "30s" {
		t.Fatalf("default statement_timeout = %q, %v; want 30s", v, err)
	}
	short, err := store.OpenWith(ctx, dsn, store.Options{StatementTimeout: 100 * time.Millisecond, MaxConns: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer short.Close()
	if got := short.Pool.Config().MaxConns; got != 3 {
		t.Fatalf("MaxConns = %d, want 3", got)
	}
	_, err = short.Pool.Exec(ctx, "SELECT pg_sleep(2)")
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "57014" {
		t.Fatalf("a 2 s statement under a 100ms timeout: %v", err)
	}
	none, err := store.OpenWith(ctx, dsn, store.Options{StatementTimeout: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer none.Close()
	if err := none.Pool.QueryRow(ctx, "SHOW statement_timeout").Scan(&v); err != nil || v != "0" {
		t.Fatalf("statement_timeout with none set = %q, %v; want the server's 0", v, err)
	}
	if got := def.Pool.Config().MaxConns; got != store.DefaultMaxConns {
		t.Fatalf("default MaxConns = %d", got)
	}
}

// The pool's settings in DATABASE_URL (pool_max_conns, pool_min_conns…),
// which Options documents, are the pool's: migrating with that same URL
// must not send them to the server as run-time parameters, which it refuses.
func TestMigrateTakesTheSameURLAsThePool(t *testing.T) {
	dsn := withParams(testdb.NewDSN(t), "pool_max_conns=4&pool_min_conns=1")
	ctx := context.Background()
	if err := store.Migrate(ctx, dsn); err != nil {
		t.Fatalf("Migrate with pool settings in the URL: %v", err)
	}
	s, err := store.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got := s.Pool.Config().MaxConns; got != 4 {
		t.Fatalf("pool of %d connections, the URL asks for 4", got)
	}
}

// A full pool opens all its connections at start, before anything asks for
// one; pool_min_conns in the URL still wins, and the default opens none
// ahead of need.
func TestAFullPoolOpensItsConnectionsAtStart(t *testing.T) {
	dsn := testdb.NewDSN(t)
	ctx := context.Background()
	if err := store.Migrate(ctx, dsn); err != nil {
		t.Fatal(err)
	}
	open := func(dsn string, o store.Options) *store.Store {
		t.Helper()
		s, err := store.OpenWith(ctx, dsn, o)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Close)
		return s
	}
	full := open(dsn, store.Options{MaxConns: 4, MinConns: store.FullPool})
	open4 := func() int32 { st := full.Pool.Stat(); return st.IdleConns() + st.AcquiredConns() }
	for deadline := time.Now().Add(10 * time.Second); open4() < 4; {
		if time.Now().After(deadline) {
			t.Fatalf("a full pool of 4 holds %d open connections 10 s after it opened", open4())
		}
		time.Sleep(10 * time.Millisecond)
	}
	for _, c := range []struct {
		name string
		dsn  string
		o    store.Options
		want int32
	}{
		{"the default", dsn, store.Options{MaxConns: 4}, 0},
		{"a full pool", dsn, store.Options{MaxConns: 4, MinConns: store.FullPool}, 4},
		{"the URL's pool_min_conns over a full pool", withParams(dsn, "pool_min_conns=1"), store.Options{MaxConns: 4, MinConns: store.FullPool}, 1},
		{"a number", dsn, store.Options{MaxConns: 4, MinConns: 2}, 2},
		{"a number past the pool's size", dsn, store.Options{MaxConns: 4, MinConns: 9}, 4},
		{"the URL's pool_min_conns past the pool's size", withParams(dsn, "pool_min_conns=9"), store.Options{MaxConns: 4}, 4},
	} {
		if got := open(c.dsn, c.o).Pool.Config().MinConns; got != c.want {
			t.Errorf("%s: MinConns %d, want %d", c.name, got, c.want)
		}
	}
}

// withParams adds query parameters to a URL-form DSN.
func withParams(dsn, params string) string {
	if strings.Contains(dsn, "?") {
		return dsn + "&" + params
	}
	return dsn + "?" + params
}
