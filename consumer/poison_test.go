package consumer_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/payflow/payflow/consumer"
	"github.com/payflow/payflow/producer"
)

// logs captures a consumer's log output.
type logs struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logs) Write(p []byte) (int, error) { l.mu.Lock(); defer l.mu.Unlock(); return l.buf.Write(p) }
func (l *logs) String() string              { l.mu.Lock(); defer l.mu.Unlock(); return l.buf.String() }
func (l *logs) logger() *slog.Logger {
	return slog.New(slog.NewJSONHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func write(t *testing.T, addr, topic string, msgs ...kafka.Message) {
	t.Helper()
	w := &kafka.Writer{Addr: kafka.TCP(addr), Topic: topic, BatchTimeout: time.Millisecond}
	defer w.Close()
	if err := w.WriteMessages(context.Background(), msgs...); err != nil {
		t.Fatal(err)
	}
}

func run(t *testing.T, c *consumer.Consumer) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
}

func (d *dlq) values() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []string
	for _, m := range d.got {
		out = append(out, string(m.Value))
	}
	return out
}

var errDatabaseDown = errors.New("database unavailable")

// A message that fails the same way on every attempt (Postgres refusing a
// NUL byte) no longer pins an in-flight slot for ever: after MaxAttempts it
// is dead-lettered with the cause, logged and counted. An error the
// classifier calls temporary (the database down) is still retried without
// bound, and so is every error when there is no classifier.
func TestBoundedRetriesDeadLetterWhatNeverSucceeds(t *testing.T) {
	addr := broker(t, producer.Topic{Name: "in", Partitions: 1})
	write(t, addr, "in",
		kafka.Message{Key: []byte("n"), Value: []byte("nul")},
		kafka.Message{Key: []byte("d"), Value: []byte("down")},
		kafka.Message{Key: []byte("g"), Value: []byte("good")})
	var mu sync.Mutex
	attempts := map[string]int{}
	var causes []error
	d := &dlq{}
	var out logs
	c := consumer.New(consumer.Config{
		Brokers: []string{addr}, GroupID: "g", Topic: "in", CommitInterval: 20 * time.Millisecond, DLQ: d,
		Logger:      out.logger(),
		Retry:       func(err error) bool { return errors.Is(err, errDatabaseDown) },
		MaxAttempts: 3,
		OnDeadLettered: func(cause error) {
			mu.Lock()
			defer mu.Unlock()
			causes = append(causes, cause)
		},
		Handler: func(ctx context.Context, m kafka.Message) error {
			mu.Lock()
			defer mu.Unlock()
			attempts[string(m.Value)]++
			switch {
			case string(m.Value) == "nul":
				return errors.New(`ERROR: invalid byte sequence for encoding "UTF8": 0x00 (SQLSTATE 22021)`)
			case string(m.Value) == "down" && attempts["down"] <= 6:
				return errDatabaseDown
			}
			return nil
		},
	})
	run(t, c)
	eventually(t, "everything committed", func() bool { return committed(t, addr, "g", "in") == 3 })
	mu.Lock()
	defer mu.Unlock()
	if attempts["nul"] != 3 || attempts["down"] != 7 || attempts["good"] != 1 {
		t.Fatalf("attempts = %v, want nul 3 (MaxAttempts), down 7 (until it worked), good 1", attempts)
	}
	if got := d.values(); len(got) != 1 || got[0] != "nul" {
		t.Fatalf("dead letters = %q, want only nul", got)
	}
	if len(causes) != 1 || !errors.Is(causes[0], consumer.ErrRetriesExhausted) || !strings.Contains(causes[0].Error(), "SQLSTATE 22021") {
		t.Fatalf("OnDeadLettered causes = %v, want one that wraps ErrRetriesExhausted and names the last error", causes)
	}
	var logged bool
	for _, line := range strings.Split(out.String(), "\n") {
		if strings.Contains(line, `"level":"ERROR"`) && strings.Contains(line, "dead-letter") && strings.Contains(line, "SQLSTATE 22021") {
			logged = true
		}
	}
	if !logged {
		t.Fatalf("no error-level log line names the dead-lettered message and its cause:\n%s", out.String())
	}
}

// Without a classifier every error is retried until it succeeds, as before.
func TestWithoutAClassifierEveryErrorIsRetried(t *testing.T) {
	addr := broker(t, producer.Topic{Name: "in", Partitions: 1})
	write(t, addr, "in", kafka.Message{Key: []byte("f"), Value: []byte("flaky")})
	var mu sync.Mutex
	attempts := 0
	d := &dlq{}
	var out logs
	c := consumer.New(consumer.Config{
		Brokers: []string{addr}, GroupID: "g", Topic: "in", CommitInterval: 20 * time.Millisecond, DLQ: d,
		Logger: out.logger(), MaxAttempts: 2,
		Handler: func(ctx context.Context, m kafka.Message) error {
			mu.Lock()
			defer mu.Unlock()
			if attempts++; attempts <= 4 {
				return errors.New("constraint violated")
			}
			return nil
		},
	})
	run(t, c)
	eventually(t, "the commit", func() bool { return committed(t, addr, "g", "in") == 1 })
	mu.Lock()
	defer mu.Unlock()
	if attempts != 5 || len(d.values()) != 0 {
		t.Fatalf("attempts = %d, dead letters %q; want 5 attempts and none", attempts, d.values())
	}
}

// OldestInFlight is the age of the oldest message fetched and not finished,
// for readiness: a stuck message shows there even when nothing else does.
func TestOldestInFlight(t *testing.T) {
	addr := broker(t, producer.Topic{Name: "in", Partitions: 1})
	write(t, addr, "in", kafka.Message{Key: []byte("s"), Value: []byte("stuck")}, kafka.Message{Key: []byte("s"), Value: []byte("behind")})
	release := make(chan struct{})
	var mu sync.Mutex
	var done []string
	c := consumer.New(consumer.Config{
		Brokers: []string{addr}, GroupID: "g", Topic: "in", CommitInterval: 20 * time.Millisecond,
		Logger: (&logs{}).logger(),
		Handler: func(ctx context.Context, m kafka.Message) error {
			if string(m.Value) == "stuck" {
				select {
				case <-release:
				case <-ctx.Done():
					return ctx.Err()
				}
			}
			mu.Lock()
			done = append(done, string(m.Value))
			mu.Unlock()
			return nil
		},
	})
	if age := c.OldestInFlight(); age != 0 {
		t.Fatalf("before Run: OldestInFlight = %s, want 0", age)
	}
	run(t, c)
	eventually(t, "an old message", func() bool { return c.OldestInFlight() > 300*time.Millisecond })
	close(release)
	eventually(t, "both handled", func() bool { mu.Lock(); defer mu.Unlock(); return len(done) == 2 })
	eventually(t, "nothing in flight", func() bool { return c.OldestInFlight() == 0 })
}

// A message abandoned at shutdown, and every message queued behind it in
// its lane, stays uncommitted: the partition's next owner gets them again.
func TestAbandonedMessagesAreNotCommitted(t *testing.T) {
	addr := broker(t, producer.Topic{Name: "in", Partitions: 1})
	write(t, addr, "in",
		kafka.Message{Key: []byte("a"), Value: []byte("first")},
		kafka.Message{Key: []byte("s"), Value: []byte("slow")},
		kafka.Message{Key: []byte("s"), Value: []byte("queued")},
		kafka.Message{Key: []byte("b"), Value: []byte("last")})
	var mu sync.Mutex
	var done []string
	started := make(chan struct{})
	c := consumer.New(consumer.Config{
		Brokers: []string{addr}, GroupID: "g", Topic: "in", CommitInterval: 20 * time.Millisecond,
		ShutdownGrace: 100 * time.Millisecond, Logger: (&logs{}).logger(),
		Handler: func(ctx context.Context, m kafka.Message) error {
			if string(m.Value) == "slow" {
				close(started)
				<-ctx.Done() // a PG call that outlives the grace period
				return ctx.Err()
			}
			mu.Lock()
			done = append(done, string(m.Value))
			mu.Unlock()
			return nil
		},
	})
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan error, 1)
	go func() { stopped <- c.Run(ctx) }()
	<-started
	eventually(t, "the others", func() bool { mu.Lock(); defer mu.Unlock(); return len(done) == 2 })
	cancel()
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
	if got := committed(t, addr, "g", "in"); got > 1 {
		t.Fatalf("committed %d past the abandoned offset 1", got)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, v := range done {
		if v == "queued" {
			t.Fatalf("a message queued behind the abandoned one ran with a cancelled context: %v", done)
		}
	}
}
