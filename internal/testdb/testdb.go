// Package testdb gives each test its own freshly migrated Postgres database
// on a real server, never a mock.
package testdb

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"net/url"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/payflow/payflow/devenv"
	"github.com/payflow/payflow/store"
)

var (
	serverOnce sync.Once
	serverDSN  string
	serverErr  error
)

// local is the server this machine kind runs for tests (Debian's cluster,
// trust auth on loopback; CI makes sure of it).
const local = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"

// ServerDSN returns the DSN of the server tests run against: DATABASE_URL
// when set, else the local server on 127.0.0.1:5432 when it answers, else
// one devenv starts (a container when Docker works, else a throwaway server
// from the installed binaries) and keeps for the test binary's life.
func ServerDSN() (string, error) {
	serverOnce.Do(func() {
		serverDSN, serverErr = resolve(context.Background(), os.Getenv("DATABASE_URL"), local, devenv.StartPostgres)
	})
	return serverDSN, serverErr
}

// resolve is ServerDSN's choice, with its inputs passed in so that each
// branch can be tested on a machine where the earlier ones would win.
func resolve(ctx context.Context, env, localDSN string, start func(context.Context, *slog.Logger) (*devenv.Postgres, error)) (string, error) {
	if env != "" {
		return env, nil
	}
	// A second is plenty for a server on loopback, and bounds the wait on
	// a machine where the port is filtered rather than closed.
	cctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if c, err := pgx.Connect(cctx, localDSN); err == nil {
		c.Close(cctx)
		return localDSN, nil
	}
	// Never closed: go test offers no hook at process exit. The server
	// dies with the test process (devenv sets Pdeathsig) and the next
	// start removes its directory.
	p, err := start(ctx, slog.Default())
	if err != nil {
		return "", err
	}
	return p.DSN(), nil
}

// NewDSN creates an empty database for t, dropped when t ends, and returns
// its DSN. The schema is not applied.
func NewDSN(t testing.TB) string {
	t.Helper()
	base, err := ServerDSN()
	if err != nil {
		t.Fatalf("testdb: no Postgres server: %v", err)
	}
	ctx := context.Background()
	admin, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatalf("testdb: connect %s: %v", redact(base), err)
	}
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	name := "payflow_test_" + hex.EncodeToString(b)
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		admin.Close(ctx)
		t.Fatalf("testdb: create database: %v", err)
	}
	admin.Close(ctx)
	t.Cleanup(func() {
		admin, err := pgx.Connect(context.Background(), base)
		if err != nil {
			return
		}
		defer admin.Close(context.Background())
		_, _ = admin.Exec(context.Background(), "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("testdb: parse DSN: %v", err)
	}
	u.Path = "/" + name
	return u.String()
}

// New creates a fresh database with payflow's schema and returns a store
// on it, closed when t ends.
func New(t testing.TB) *store.Store {
	t.Helper()
	dsn := NewDSN(t)
	ctx := context.Background()
	if err := store.Migrate(ctx, dsn); err != nil {
		t.Fatalf("testdb: %v", err)
	}
	s, err := store.Open(ctx, dsn)
	if err != nil {
		t.Fatalf("testdb: %v", err)
	}
	t.Cleanup(s.Close)
	return s
}

// Pool is New for tests that only need the pool.
func Pool(t testing.TB) *pgxpool.Pool { return New(t).Pool }

func redact(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil {
		return "(unparseable DSN)"
	}
	return u.Redacted()
}
