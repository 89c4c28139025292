package devenv_test

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/segmentio/kafka-go"

	"github.com/payflow/payflow/devenv"
)

func testLog(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, nil))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// The address clients bootstrap from must be the one the broker
// advertises, or a client outside the process (kcat, an acceptance test)
// is sent to an address that does not answer.
func TestKafkaAdvertisesItsListenAddress(t *testing.T) {
	fixed := freeAddr(t)
	_, fixedPort, _ := net.SplitHostPort(fixed)
	for _, tc := range []struct{ listen, wantHost, wantPort string }{
		{"", "127.0.0.1", ""},
		{"127.0.0.1:0", "127.0.0.1", ""},
		{fixed, "127.0.0.1", fixedPort},
		{"0.0.0.0:0", "127.0.0.1", ""}, // bound everywhere, advertised dialable
	} {
		t.Run(tc.listen, func(t *testing.T) {
			k, err := devenv.StartKafka(tc.listen)
			if err != nil {
				t.Fatal(err)
			}
			defer k.Close()
			host, port, err := net.SplitHostPort(k.Addr())
			if err != nil {
				t.Fatal(err)
			}
			if host != tc.wantHost || port == "0" || (tc.wantPort != "" && port != tc.wantPort) {
				t.Fatalf("Addr() = %s, want host %s port %q", k.Addr(), tc.wantHost, tc.wantPort)
			}
			conn, err := kafka.Dial("tcp", k.Addr())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			brokers, err := conn.Brokers()
			if err != nil {
				t.Fatal(err)
			}
			if len(brokers) != 1 || net.JoinHostPort(brokers[0].Host, strconv.Itoa(brokers[0].Port)) != k.Addr() {
				t.Fatalf("metadata advertises %+v, want exactly %s", brokers, k.Addr())
			}
		})
	}
}

func TestKafkaAddressInUse(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	k, err := devenv.StartKafka(l.Addr().String())
	if err == nil {
		k.Close()
		t.Fatalf("StartKafka on a taken address %s succeeded", l.Addr())
	}
}

// kafka-go, payflow's client, works against the embedded broker: topics
// with 12 partitions, keyed produce in order, group consume, and commits a
// restarted consumer resumes from.
func TestEmbeddedKafkaSpeaksTheProtocol(t *testing.T) {
	k, err := devenv.StartKafka("")
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	defer k.Close() // a second Close must be harmless
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	cl := &kafka.Client{Addr: kafka.TCP(k.Addr())}
	res, err := cl.CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{{Topic: "t", NumPartitions: 12, ReplicationFactor: 1}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := res.Errors["t"]; err != nil {
		t.Fatal(err)
	}
	conn, err := kafka.Dial("tcp", k.Addr())
	if err != nil {
		t.Fatal(err)
	}
	parts, err := conn.ReadPartitions("t")
	conn.Close()
	if err != nil {
		t.Fatal(err)
	}
	if len(parts) != 12 {
		t.Fatalf("topic has %d partitions, want 12", len(parts))
	}

	w := &kafka.Writer{Addr: kafka.TCP(k.Addr()), Topic: "t", Balancer: &kafka.Hash{}, BatchTimeout: time.Millisecond, RequiredAcks: kafka.RequireAll}
	defer w.Close()
	write := func(vals ...string) {
		t.Helper()
		msgs := make([]kafka.Message, len(vals))
		for i, v := range vals {
			msgs[i] = kafka.Message{Key: []byte("charge-1"), Value: []byte(v)}
		}
		if err := w.WriteMessages(ctx, msgs...); err != nil {
			t.Fatal(err)
		}
	}
	write("1", "2", "3")

	read := func(r *kafka.Reader, want string, commit bool) {
		t.Helper()
		m, err := r.FetchMessage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if string(m.Value) != want {
			t.Fatalf("got %s, want %s (same key, same partition, same order)", m.Value, want)
		}
		if commit {
			if err := r.CommitMessages(ctx, m); err != nil {
				t.Fatal(err)
			}
		}
	}
	cfg := kafka.ReaderConfig{Brokers: []string{k.Addr()}, GroupID: "g", Topic: "t", MaxWait: 50 * time.Millisecond, StartOffset: kafka.FirstOffset}
	r := kafka.NewReader(cfg)
	read(r, "1", true)
	read(r, "2", true)
	read(r, "3", false) // fetched, never committed: must come again
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}

	r = kafka.NewReader(cfg)
	defer r.Close()
	read(r, "3", true)
}

// kcat is how the outside world checks the broker: metadata, produce and
// consume through the advertised address.
func TestKcatReachesTheBroker(t *testing.T) {
	kcat, err := exec.LookPath("kcat")
	if err != nil {
		t.Skip("kcat not installed")
	}
	k, err := devenv.StartKafka("")
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cl := &kafka.Client{Addr: kafka.TCP(k.Addr())}
	if _, err := cl.CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{{Topic: "k", NumPartitions: 12, ReplicationFactor: 1}}}); err != nil {
		t.Fatal(err)
	}

	out, err := exec.CommandContext(ctx, kcat, "-b", k.Addr(), "-L", "-t", "k").CombinedOutput()
	if err != nil {
		t.Fatalf("kcat -L: %v\n%s", err, out)
	}
	if !bytes.Contains(out, []byte("at "+k.Addr())) || !bytes.Contains(out, []byte("12 partitions")) {
		t.Fatalf("kcat -L does not show the broker at %s with 12 partitions:\n%s", k.Addr(), out)
	}

	produce := exec.CommandContext(ctx, kcat, "-b", k.Addr(), "-P", "-t", "k", "-K", ":")
	produce.Stdin = strings.NewReader("c1:hello\n")
	if out, err := produce.CombinedOutput(); err != nil {
		t.Fatalf("kcat -P: %v\n%s", err, out)
	}
	out, err = exec.CommandContext(ctx, kcat, "-b", k.Addr(), "-C", "-t", "k", "-e", "-q", "-f", "%k=%s\n").Output()
	if err != nil {
		t.Fatalf("kcat -C: %v\n%s", err, out)
	}
	if strings.TrimSpace(string(out)) != "c1=hello" {
		t.Fatalf("kcat consumed %q, want c1=hello", out)
	}
}

func TestStartPostgresUsesDatabaseURLAsIs(t *testing.T) {
	const dsn = "postgres://someone@db.example.invalid:6543/elsewhere?sslmode=require"
	t.Setenv("DATABASE_URL", dsn)
	p, err := devenv.StartPostgres(context.Background(), testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	if p.DSN() != dsn {
		t.Fatalf("DSN() = %s, want DATABASE_URL unchanged", p.DSN())
	}
	p.Close() // must not try to stop a server devenv does not own
	if p.Restart() == nil {
		t.Fatal("Restart of DATABASE_URL's server succeeded")
	}
}

// Without DATABASE_URL, StartPostgres brings up a server of its own
// (container or throwaway) with a payflow database.
func TestStartPostgresWithoutDatabaseURL(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a server")
	}
	t.Setenv("DATABASE_URL", "")
	ctx := context.Background()
	p, err := devenv.StartPostgres(ctx, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	checkPayflowDB(t, p.DSN())
}

func checkPayflowDB(t *testing.T, dsn string) {
	t.Helper()
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	if u.Query().Get("sslmode") != "disable" || u.Path != "/payflow" {
		t.Fatalf("DSN %s: want database payflow and sslmode=disable", u.Redacted())
	}
	ctx := context.Background()
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	var db string
	if err := c.QueryRow(ctx, "SELECT current_database()").Scan(&db); err != nil || db != "payflow" {
		t.Fatalf("current_database() = %q, %v", db, err)
	}
	if _, err := c.Exec(ctx, "CREATE TABLE t (x int); INSERT INTO t VALUES (1); DROP TABLE t"); err != nil {
		t.Fatalf("cannot write: %v", err)
	}
}

// The throwaway server path, tested even where DATABASE_URL or a local
// server on 5432 exists, since a fresh machine has neither.
func TestThrowawayPostgres(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a server")
	}
	t.Setenv("DATABASE_URL", "")
	ctx := context.Background()
	p, err := devenv.StartLocalPostgres(ctx, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	checkPayflowDB(t, p.DSN())

	c, err := pgx.Connect(ctx, p.DSN())
	if err != nil {
		t.Fatal(err)
	}
	var dataDir string
	err = c.QueryRow(ctx, "SELECT current_setting('data_directory')").Scan(&dataDir)
	c.Close(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(dataDir, os.TempDir()) {
		t.Fatalf("data directory %s is not a throwaway one under %s", dataDir, os.TempDir())
	}

	p.Close()
	if c, err := pgx.Connect(ctx, p.DSN()); err == nil {
		c.Close(ctx)
		t.Fatal("server still answers after Close")
	}
	if _, err := os.Stat(filepath.Dir(dataDir)); !os.IsNotExist(err) {
		t.Fatalf("Close left %s behind (%v)", filepath.Dir(dataDir), err)
	}
}

func TestThrowawayPostgresRestarts(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a server")
	}
	ctx := context.Background()
	p, err := devenv.StartLocalPostgres(ctx, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c, err := pgx.Connect(ctx, p.DSN())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Exec(ctx, "CREATE TABLE kept (x int); INSERT INTO kept VALUES (7)"); err != nil {
		t.Fatal(err)
	}
	if err := p.Restart(); err != nil {
		t.Fatal(err)
	}
	if err := c.Ping(ctx); err == nil {
		t.Fatal("a connection survived the restart; it was not one")
	}
	c, err = pgx.Connect(ctx, p.DSN())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	var x int
	if err := c.QueryRow(ctx, "SELECT x FROM kept").Scan(&x); err != nil || x != 7 {
		t.Fatalf("data after restart: %d %v", x, err)
	}
}

// Two servers at once (two test binaries under `go test ./...`) get
// separate ports and directories.
func TestThrowawayPostgresTwice(t *testing.T) {
	if testing.Short() {
		t.Skip("starts servers")
	}
	ctx := context.Background()
	a, err := devenv.StartLocalPostgres(ctx, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := devenv.StartLocalPostgres(ctx, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if a.DSN() == b.DSN() {
		t.Fatalf("both servers at %s", a.DSN())
	}
	checkPayflowDB(t, a.DSN())
	checkPayflowDB(t, b.DSN())
}
