package consumer_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/payflow/payflow/consumer"
	"github.com/payflow/payflow/devenv"
	"github.com/payflow/payflow/producer"
)

func broker(t *testing.T, topics ...producer.Topic) string {
	t.Helper()
	k, err := devenv.StartKafka("")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(k.Close)
	if err := producer.EnsureTopics(context.Background(), []string{k.Addr()}, topics); err != nil {
		t.Fatal(err)
	}
	return k.Addr()
}

func committed(t *testing.T, addr, group, topic string) int64 {
	t.Helper()
	cl := &kafka.Client{Addr: kafka.TCP(addr)}
	resp, err := cl.OffsetFetch(context.Background(), &kafka.OffsetFetchRequest{GroupID: group, Topics: map[string][]int{topic: {0}}})
	if err != nil {
		t.Fatal(err)
	}
	parts := resp.Topics[topic]
	if len(parts) == 0 {
		return -1 // the group has not committed yet
	}
	return parts[0].CommittedOffset
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A slow message holds back nothing but its own key, and the committed
// offset stays below it until it is done.
func TestSlowKeyBlocksOnlyItselfAndHoldsTheCommit(t *testing.T) {
	addr := broker(t, producer.Topic{Name: "in", Partitions: 1})
	w := &kafka.Writer{Addr: kafka.TCP(addr), Topic: "in", BatchTimeout: time.Millisecond}
	defer w.Close()
	msgs := []kafka.Message{{Key: []byte("slow"), Value: []byte("s1")}}
	for _, v := range []string{"a", "b", "c"} {
		msgs = append(msgs, kafka.Message{Key: []byte(v), Value: []byte(v)})
	}
	msgs = append(msgs, kafka.Message{Key: []byte("slow"), Value: []byte("s2")})
	if err := w.WriteMessages(context.Background(), msgs...); err != nil {
		t.Fatal(err)
	}

	release := make(chan struct{})
	var mu sync.Mutex
	var order []string
	c := consumer.New(consumer.Config{
		Brokers: []string{addr}, GroupID: "g", Topic: "in", CommitInterval: 20 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Handler: func(ctx context.Context, m kafka.Message) error {
			if string(m.Value) == "s1" {
				<-release
			}
			mu.Lock()
			order = append(order, string(m.Value))
			mu.Unlock()
			return nil
		},
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- c.Run(ctx) }()

	handled := func(n int) func() bool {
		return func() bool { mu.Lock(); defer mu.Unlock(); return len(order) == n }
	}
	eventually(t, "the other keys", handled(3))
	time.Sleep(100 * time.Millisecond) // several commit intervals
	if got := committed(t, addr, "g", "in"); got > 0 {
		t.Fatalf("committed %d while offset 0 is unfinished", got)
	}
	close(release)
	eventually(t, "the slow key", handled(5))
	mu.Lock()
	if order[3] != "s1" || order[4] != "s2" {
		t.Fatalf("order = %v: one key's messages must stay in order", order)
	}
	mu.Unlock()
	eventually(t, "the commit", func() bool { return committed(t, addr, "g", "in") == 5 })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

type dlq struct {
	mu  sync.Mutex
	got []kafka.Message
}

func (d *dlq) DeadLetter(_ context.Context, m kafka.Message, _ error) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.got = append(d.got, m)
	return nil
}

// A poison message goes to the dead-letter topic and the partition moves on;
// a handler error (the database down) is retried, never skipped.
func TestPoisonIsDeadLetteredAndErrorsAreRetried(t *testing.T) {
	addr := broker(t, producer.Topic{Name: "in", Partitions: 1})
	w := &kafka.Writer{Addr: kafka.TCP(addr), Topic: "in", BatchTimeout: time.Millisecond}
	defer w.Close()
	if err := w.WriteMessages(context.Background(),
		kafka.Message{Key: []byte("p"), Value: []byte("poison")},
		kafka.Message{Key: []byte("f"), Value: []byte("flaky")},
		kafka.Message{Key: []byte("g"), Value: []byte("good")}); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	attempts := map[string]int{}
	d := &dlq{}
	c := consumer.New(consumer.Config{
		Brokers: []string{addr}, GroupID: "g", Topic: "in", CommitInterval: 20 * time.Millisecond, DLQ: d,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Handler: func(ctx context.Context, m kafka.Message) error {
			mu.Lock()
			defer mu.Unlock()
			attempts[string(m.Value)]++
			switch {
			case string(m.Value) == "poison":
				return consumer.DeadLetter(errors.New("not a CloudEvent"))
			case string(m.Value) == "flaky" && attempts["flaky"] < 3:
				return errors.New("database unavailable")
			}
			return nil
		},
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = c.Run(ctx) }()
	eventually(t, "everything committed", func() bool { return committed(t, addr, "g", "in") == 3 })
	mu.Lock()
	defer mu.Unlock()
	if attempts["flaky"] != 3 || attempts["poison"] != 1 {
		t.Fatalf("attempts = %v", attempts)
	}
	if len(d.got) != 1 || string(d.got[0].Value) != "poison" {
		t.Fatalf("dead letters = %v", d.got)
	}
}

// The producer's dead-letter copy keeps the message and names the error and
// its origin.
func TestDeadLetterHeaders(t *testing.T) {
	addr := broker(t, producer.Topics(1)...)
	pw := producer.NewWriter([]string{addr})
	defer pw.Close()
	src := kafka.Message{Topic: "payment.requests", Partition: 0, Offset: 42, Key: []byte("k"), Value: []byte("{not json")}
	if err := pw.DeadLetter(context.Background(), src, errors.New("unparseable event: bad json")); err != nil {
		t.Fatal(err)
	}
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: []string{addr}, Topic: "payment.requests.dlq", Partition: 0, MaxWait: 50 * time.Millisecond})
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	m, err := r.ReadMessage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	h := map[string]string{}
	for _, x := range m.Headers {
		h[x.Key] = string(x.Value)
	}
	if string(m.Value) != "{not json" || h["dlq-error"] != "unparseable event: bad json" || h["dlq-source-partition"] != "0" || h["dlq-source-offset"] != "42" {
		t.Fatalf("dlq message %q headers %v", m.Value, h)
	}
}

// deadLetters is an observer that hears only dead letters.
type deadLetters func(cause error)

func (deadLetters) Attempt(ctx context.Context, _ kafka.Message) (context.Context, func(error)) {
	return ctx, func(error) {}
}
func (f deadLetters) DeadLettered(_ kafka.Message, cause error) { f(cause) }

type attemptKey struct{}

// attempts records every attempt the consumer reports, with its outcome.
type attempts struct {
	mu   sync.Mutex
	ends []string
}

func (a *attempts) Attempt(ctx context.Context, m kafka.Message) (context.Context, func(error)) {
	return context.WithValue(ctx, attemptKey{}, string(m.Value)), func(err error) {
		a.mu.Lock()
		defer a.mu.Unlock()
		outcome := "ok"
		var dl *consumer.DeadLetterError
		switch {
		case errors.As(err, &dl):
			outcome = "dead"
		case err != nil:
			outcome = "retry"
		}
		a.ends = append(a.ends, string(m.Value)+" "+outcome)
	}
}

func (a *attempts) DeadLettered(m kafka.Message, _ error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.ends = append(a.ends, string(m.Value)+" dead-lettered")
}

func (a *attempts) list() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.ends...)
}

// The observer hears every attempt, in the context the handler runs with,
// and its outcome; then each dead letter once it is in the topic.
func TestObserverHearsEachAttemptAndDeadLetter(t *testing.T) {
	addr := broker(t, producer.Topic{Name: "in", Partitions: 1})
	w := &kafka.Writer{Addr: kafka.TCP(addr), Topic: "in", BatchTimeout: time.Millisecond}
	defer w.Close()
	if err := w.WriteMessages(context.Background(), kafka.Message{Key: []byte("k"), Value: []byte("flaky")},
		kafka.Message{Key: []byte("k"), Value: []byte("poison")}); err != nil {
		t.Fatal(err)
	}
	obs := &attempts{}
	var mu sync.Mutex
	tries := 0
	c := consumer.New(consumer.Config{
		Brokers: []string{addr}, GroupID: "g", Topic: "in", CommitInterval: 20 * time.Millisecond, DLQ: &dlq{},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Observer: obs,
		Handler: func(ctx context.Context, m kafka.Message) error {
			if got, _ := ctx.Value(attemptKey{}).(string); got != string(m.Value) {
				t.Errorf("the handler of %s runs without its attempt's context (%q)", m.Value, got)
			}
			if string(m.Value) == "poison" {
				return consumer.DeadLetter(errors.New("not a request"))
			}
			mu.Lock()
			defer mu.Unlock()
			if tries++; tries == 1 {
				return errors.New("database down")
			}
			return nil
		},
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- c.Run(ctx) }()
	eventually(t, "the commit", func() bool { return committed(t, addr, "g", "in") == 2 })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	want := []string{"flaky retry", "flaky ok", "poison dead", "poison dead-lettered"}
	if got := obs.list(); !slices.Equal(got, want) {
		t.Fatalf("observed %v, want %v", got, want)
	}
}
