package consumer_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/payflow/payflow/consumer"
	"github.com/payflow/payflow/events"
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
// A handler that panics on a message fails that message: it is retried,
// then dead-lettered, and the other messages, before and behind it on the
// partition, are handled (found by review: the panic ended the process,
// and every member given the partition after it).
func TestAHandlerPanicFailsItsMessageOnly(t *testing.T) {
	addr := broker(t, producer.Topic{Name: "in", Partitions: 1})
	write(t, addr, "in",
		kafka.Message{Key: []byte("a"), Value: []byte("before")},
		kafka.Message{Key: []byte("p"), Value: []byte("panics")},
		kafka.Message{Key: []byte("b"), Value: []byte("behind")})
	var mu sync.Mutex
	attempts := map[string]int{}
	d := &dlq{}
	var out logs
	c := consumer.New(consumer.Config{
		Brokers: []string{addr}, GroupID: "g", Topic: "in", CommitInterval: 20 * time.Millisecond, DLQ: d,
		Logger: out.logger(), Retry: func(error) bool { return false }, MaxAttempts: 3,
		Handler: func(ctx context.Context, m kafka.Message) error {
			mu.Lock()
			attempts[string(m.Value)]++
			mu.Unlock()
			if string(m.Value) == "panics" {
				var nothing map[string]int
				nothing["x"] = 1 // a bug: assignment to a nil map
			}
			return nil
		},
	})
	run(t, c)
	eventually(t, "everything committed", func() bool { return committed(t, addr, "g", "in") == 3 })
	mu.Lock()
	defer mu.Unlock()
	if attempts["before"] != 1 || attempts["panics"] != 3 || attempts["behind"] != 1 {
		t.Fatalf("attempts = %v, want the panicking one 3 times (MaxAttempts), the others once", attempts)
	}
	if got := d.values(); len(got) != 1 || got[0] != "panics" {
		t.Fatalf("dead letters = %q, want the panicking message", got)
	}
	if !strings.Contains(out.String(), "handler panicked") {
		t.Fatal("the panic was not logged")
	}
}

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
		Observer: deadLetters(func(cause error) {
			mu.Lock()
			defer mu.Unlock()
			causes = append(causes, cause)
		}),
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
		t.Fatalf("DeadLettered causes = %v, want one that wraps ErrRetriesExhausted and names the last error", causes)
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

// createDLQ creates the dead-letter topic with a broker-side size limit.
func createDLQ(t *testing.T, addr string, maxMessageBytes int) {
	t.Helper()
	cl := &kafka.Client{Addr: kafka.TCP(addr), Timeout: 10 * time.Second}
	resp, err := cl.CreateTopics(context.Background(), &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{{
		Topic: events.TopicDLQ, NumPartitions: 1, ReplicationFactor: -1,
		ConfigEntries: []kafka.ConfigEntry{{ConfigName: "max.message.bytes", ConfigValue: strconv.Itoa(maxMessageBytes)}},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := resp.Errors[events.TopicDLQ]; err != nil {
		t.Fatal(err)
	}
}

func readDLQ(t *testing.T, addr string, n int) []kafka.Message {
	t.Helper()
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: []string{addr}, Topic: events.TopicDLQ, Partition: 0, MaxWait: 50 * time.Millisecond})
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var out []kafka.Message
	for len(out) < n {
		m, err := r.ReadMessage(ctx)
		if err != nil {
			t.Fatalf("reading the dead-letter topic: %v (have %d of %d)", err, len(out), n)
		}
		out = append(out, m)
	}
	return out
}

func headers(m kafka.Message) map[string]string {
	h := map[string]string{}
	for _, x := range m.Headers {
		h[x.Key] = string(x.Value)
	}
	return h
}

// A request just under the broker's size limit fits the request topic, but
// its dead-letter copy, with the headers added, does not. The broker refuses
// it every time; instead of looping, the consumer writes a stub: the headers
// that locate the original, no value, and the value's size.
func TestOversizedDeadLetterBecomesAStub(t *testing.T) {
	const limit = 4096
	addr := broker(t, producer.Topic{Name: "in", Partitions: 1})
	createDLQ(t, addr, limit)
	big := bytes.Repeat([]byte("x"), limit-200)
	write(t, addr, "in",
		kafka.Message{Key: []byte("big"), Value: big, Headers: []kafka.Header{{Key: "content-type", Value: []byte(events.ContentType)}}},
		kafka.Message{Key: []byte("next"), Value: []byte("good")})
	pw := producer.NewWriter([]string{addr})
	defer pw.Close()
	var mu sync.Mutex
	var handled []string
	var out logs
	c := consumer.New(consumer.Config{
		Brokers: []string{addr}, GroupID: "g", Topic: "in", CommitInterval: 20 * time.Millisecond, DLQ: pw,
		Logger: out.logger(),
		Handler: func(ctx context.Context, m kafka.Message) error {
			mu.Lock()
			handled = append(handled, string(m.Key))
			mu.Unlock()
			if string(m.Key) == "big" {
				return consumer.DeadLetter(fmt.Errorf("%w: not JSON (syntax error at byte 1)", events.ErrUnparseable))
			}
			return nil
		},
	})
	run(t, c)
	eventually(t, "both committed", func() bool { return committed(t, addr, "g", "in") == 2 })
	got := readDLQ(t, addr, 1)
	h := headers(got[0])
	if len(got[0].Value) != 0 || h["dlq-value-dropped"] != strconv.Itoa(len(big)) || h["dlq-headers-dropped"] != "1" ||
		h["dlq-source-partition"] != "0" || h["dlq-source-offset"] != "0" || h["dlq-source-topic"] != "in" ||
		!strings.Contains(h["dlq-error"], "not JSON") || string(got[0].Key) != "big" {
		t.Fatalf("stub: key %q, %d value bytes, headers %v", got[0].Key, len(got[0].Value), h)
	}
	// The broker's MESSAGE_TOO_LARGE is final: the stub follows at once.
	var logged bool
	for _, line := range strings.Split(out.String(), "\n") {
		logged = logged || strings.Contains(line, "without its value") && strings.Contains(line, `"attempt":1,`)
	}
	if !logged {
		t.Fatalf("no log line says the first refusal turned the dead letter into a stub:\n%s", out.String())
	}
}

// The stub keeps what locates the original and says what it left out.
func TestStub(t *testing.T) {
	m := kafka.Message{Topic: "in", Partition: 3, Offset: 99, Key: []byte("c-1"), Value: []byte("0123456789"),
		Headers: []kafka.Header{{Key: "a", Value: []byte("1")}, {Key: "b", Value: []byte("2")}}}
	s := consumer.Stub(m)
	if s.Topic != "in" || s.Partition != 3 || s.Offset != 99 || string(s.Key) != "c-1" || len(s.Value) != 0 {
		t.Fatalf("stub = %+v", s)
	}
	if h := headers(s); len(h) != 2 || h["dlq-value-dropped"] != "10" || h["dlq-headers-dropped"] != "2" {
		t.Fatalf("stub headers = %v", h)
	}
	// A key too large to be a charge id is dropped too.
	m.Key, m.Headers = bytes.Repeat([]byte("k"), 1000), nil
	s = consumer.Stub(m)
	if h := headers(s); len(s.Key) != 0 || h["dlq-key-dropped"] != "1000" || h["dlq-value-dropped"] != "10" || len(h) != 2 {
		t.Fatalf("stub of a large key: key %d bytes, headers %v", len(s.Key), h)
	}
}

// refusingDLQ refuses values over a size; it counts what it was asked.
type refusingDLQ struct {
	dlq
	max   int
	tries int
}

func (d *refusingDLQ) DeadLetter(ctx context.Context, m kafka.Message, cause error) error {
	d.mu.Lock()
	d.tries++
	d.mu.Unlock()
	if len(m.Value) > d.max {
		return errors.New("kafka: connection reset") // not recognisably final
	}
	return d.dlq.DeadLetter(ctx, m, cause)
}

// Any dead-letter write that keeps failing falls back to the stub after a
// few attempts, even when the error does not say it is final.
func TestDeadLetterFallsBackToAStubAfterAFewAttempts(t *testing.T) {
	addr := broker(t, producer.Topic{Name: "in", Partitions: 1})
	write(t, addr, "in", kafka.Message{Key: []byte("k"), Value: []byte("not a cloud event")})
	d := &refusingDLQ{max: 5}
	c := consumer.New(consumer.Config{
		Brokers: []string{addr}, GroupID: "g", Topic: "in", CommitInterval: 20 * time.Millisecond, DLQ: d,
		Logger: (&logs{}).logger(),
		Handler: func(ctx context.Context, m kafka.Message) error {
			return consumer.DeadLetter(errors.New("unparseable event"))
		},
	})
	run(t, c)
	eventually(t, "the commit", func() bool { return committed(t, addr, "g", "in") == 1 })
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.got) != 1 || len(d.got[0].Value) != 0 || headers(d.got[0])["dlq-value-dropped"] != "17" || d.tries < 3 {
		t.Fatalf("after %d tries dead letters = %+v", d.tries, d.got)
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

// Nothing the consumer logs or writes into dead-letter headers carries the
// message's content: errors that quote it (the CloudEvents SDK's did, and a
// database error can) are masked first. Partition and offset locate the
// message for whoever may read it.
func TestErrorsDoNotCarryTheMessageIntoLogsOrDeadLetters(t *testing.T) {
	const phone, key = "01012345678", "bk_live_7Hq2ZpL9xW"
	addr := broker(t, append(producer.Topics(1), producer.Topic{Name: "in", Partitions: 1})...)
	unparseable := `{"specversion":"1.0","id":"e1","source":"shop","type":"payment.charge.requested","time":"` + phone + `",` +
		`"data":{"customer":{"phone":"` + phone + `","billing_key":"` + key + `"}}}`
	stuck := `{"specversion":"1.0","id":"e2","source":"shop","type":"payment.charge.requested",` +
		`"data":{"customer":{"phone":"` + phone + ` ","name":"Hong ` + key + `"}}}`
	write(t, addr, "in",
		kafka.Message{Key: []byte("a"), Value: []byte(unparseable)},
		kafka.Message{Key: []byte("b"), Value: []byte(`{"note":"` + key + `", "phone": ` + phone[1:] + `}`)},
		kafka.Message{Key: []byte("c"), Value: []byte(stuck)},
		kafka.Message{Key: []byte("d"), Value: []byte("not json at all " + phone + " " + key)})
	pw := producer.NewWriter([]string{addr})
	defer pw.Close()
	var out logs
	var mu sync.Mutex
	attempts := map[string]int{}
	c := consumer.New(consumer.Config{
		Brokers: []string{addr}, GroupID: "g", Topic: "in", CommitInterval: 20 * time.Millisecond, DLQ: pw,
		Logger: out.logger(), MaxAttempts: 2,
		Retry: func(err error) bool { return errors.Is(err, errDatabaseDown) },
		Handler: func(ctx context.Context, m kafka.Message) error {
			mu.Lock()
			attempts[string(m.Key)]++
			n := attempts[string(m.Key)]
			mu.Unlock()
			switch string(m.Key) {
			case "a", "d":
				if _, err := events.Decode(m.Value); err != nil {
					return consumer.DeadLetter(err)
				}
				return nil
			case "b":
				// An error that quotes the input, as a database error can.
				if n == 1 {
					return fmt.Errorf("store: %w: invalid input syntax for type uuid: %q; %s", errDatabaseDown, key, phone[1:])
				}
				return consumer.DeadLetter(fmt.Errorf("unparseable event: value %q is not a charge id", key))
			default:
				return fmt.Errorf(`ERROR: value too long for "%s" or "Hong %s" (SQLSTATE 22001)`, phone, key)
			}
		},
	})
	run(t, c)
	eventually(t, "everything committed", func() bool { return committed(t, addr, "g", "in") == 4 })
	got := readDLQ(t, addr, 4)
	for _, m := range got {
		for _, h := range m.Headers {
			if strings.Contains(string(h.Value), phone[1:]) || strings.Contains(string(h.Value), key) || strings.Contains(string(h.Value), "bk_live") {
				t.Errorf("dead letter of %s: header %s = %q quotes the message", m.Key, h.Key, h.Value)
			}
		}
		if h := headers(m); h["dlq-error"] == "" || h["dlq-source-offset"] == "" {
			t.Errorf("dead letter of %s lost its error or origin: %v", m.Key, h)
		}
	}
	logged := out.String()
	if strings.Contains(logged, phone[1:]) || strings.Contains(logged, key) || strings.Contains(logged, "bk_live") {
		t.Fatalf("the log quotes a message:\n%s", logged)
	}
	if !strings.Contains(logged, "SQLSTATE 22001") {
		t.Fatalf("masking took the error's own words too:\n%s", logged)
	}
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

// A message that waits for an earlier one of its key (the worker's busy
// charge) is retried without bound and is no error: never dead-lettered,
// never logged at error level.
func TestWaitingIsRetriedQuietlyAndNeverDeadLettered(t *testing.T) {
	addr := broker(t, producer.Topic{Name: "in", Partitions: 1})
	write(t, addr, "in", kafka.Message{Key: []byte("k"), Value: []byte("waits")})
	errBusy := errors.New("charge busy")
	var mu sync.Mutex
	attempts := 0
	d := &dlq{}
	var out logs
	c := consumer.New(consumer.Config{
		Brokers: []string{addr}, GroupID: "g", Topic: "in", CommitInterval: 20 * time.Millisecond, DLQ: d,
		Logger:      out.logger(),
		Retry:       func(error) bool { return false },
		Waiting:     func(err error) bool { return errors.Is(err, errBusy) },
		MaxAttempts: 2,
		Handler: func(ctx context.Context, m kafka.Message) error {
			mu.Lock()
			defer mu.Unlock()
			if attempts++; attempts <= 5 {
				return fmt.Errorf("worker: %w", errBusy)
			}
			return nil
		},
	})
	run(t, c)
	eventually(t, "committed", func() bool { return committed(t, addr, "g", "in") == 1 })
	if got := d.values(); len(got) != 0 {
		t.Fatalf("dead letters = %q", got)
	}
	if strings.Contains(out.String(), `"level":"ERROR"`) {
		t.Fatalf("waiting was logged as an error:\n%s", out.String())
	}
}
