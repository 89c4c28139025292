package testdb

import (
	"context"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/payflow/payflow/devenv"
)

func mustNotStart(t *testing.T) func(context.Context, *slog.Logger) (*devenv.Postgres, error) {
	return func(context.Context, *slog.Logger) (*devenv.Postgres, error) {
		t.Fatal("started a server when an earlier choice was available")
		return nil, nil
	}
}

func TestResolvePrefersDatabaseURL(t *testing.T) {
	const env = "postgres://ci@db.example.invalid/x?sslmode=disable"
	got, err := resolve(context.Background(), env, local, mustNotStart(t))
	if err != nil || got != env {
		t.Fatalf("resolve = %q, %v; want DATABASE_URL %q", got, err, env)
	}
}

func TestResolveUsesTheLocalServer(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, local)
	if err != nil {
		t.Skipf("no local server at %s: %v", local, err)
	}
	c.Close(ctx)
	got, err := resolve(context.Background(), "", local, mustNotStart(t))
	if err != nil || got != local {
		t.Fatalf("resolve = %q, %v; want the local server", got, err)
	}
}

// On a machine with neither DATABASE_URL nor a local server, a server is
// started, and quickly: the dead local address must not stall it.
func TestResolveStartsAServerWhenNothingAnswers(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a server")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedPort := l.Addr().String()
	l.Close()
	dead := "postgres://postgres@" + closedPort + "/test?sslmode=disable&connect_timeout=5"

	var started *devenv.Postgres
	start := func(ctx context.Context, log *slog.Logger) (*devenv.Postgres, error) {
		p, err := devenv.StartLocalPostgres(ctx, log)
		started = p
		return p, err
	}
	begin := time.Now()
	got, err := resolve(context.Background(), "", dead, start)
	if err != nil {
		t.Fatal(err)
	}
	if started == nil {
		t.Fatal("resolve answered without starting a server")
	}
	t.Cleanup(started.Close)
	if got != started.DSN() {
		t.Fatalf("resolve = %q; want the started server's DSN %q", got, started.DSN())
	}
	if d := time.Since(begin); d > 30*time.Second {
		t.Fatalf("fallback took %s", d)
	}
	c, err := pgx.Connect(context.Background(), got)
	if err != nil {
		t.Fatal(err)
	}
	c.Close(context.Background())
}

// Each NewDSN is its own empty database, gone when its test ends.
func TestNewDSNIsFreshAndDropped(t *testing.T) {
	ctx := context.Background()
	var names []string
	for range 2 {
		t.Run("db", func(t *testing.T) {
			dsn := NewDSN(t)
			c, err := pgx.Connect(ctx, dsn)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close(ctx)
			var tables int
			if err := c.QueryRow(ctx, "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'").Scan(&tables); err != nil {
				t.Fatal(err)
			}
			if tables != 0 {
				t.Fatalf("new database has %d tables", tables)
			}
			if _, err := c.Exec(ctx, "CREATE TABLE leftover (x int)"); err != nil {
				t.Fatal(err)
			}
			u, _ := url.Parse(dsn)
			names = append(names, strings.TrimPrefix(u.Path, "/"))
		})
	}
	if len(names) != 2 || names[0] == names[1] {
		t.Fatalf("databases %v: want two distinct", names)
	}
	base, err := ServerDSN()
	if err != nil {
		t.Fatal(err)
	}
	c, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	var left int
	if err := c.QueryRow(ctx, "SELECT count(*) FROM pg_database WHERE datname = ANY($1)", names).Scan(&left); err != nil {
		t.Fatal(err)
	}
	if left != 0 {
		t.Fatalf("%d of %v still exist after their tests ended", left, names)
	}
}

func TestNewAppliesTheSchema(t *testing.T) {
	pool := Pool(t)
	var tables int
	if err := pool.QueryRow(context.Background(), "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'").Scan(&tables); err != nil {
		t.Fatal(err)
	}
	if tables == 0 {
		t.Fatal("no tables: the schema was not applied")
	}
}
