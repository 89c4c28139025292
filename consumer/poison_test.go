package consumer_test

import (
	"bytes"
	"context"
	"log/slog"
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
