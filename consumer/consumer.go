// Package consumer owns payflow's reading of the request topic with a
// kafka-go consumer group: it runs messages of different keys concurrently
// and messages of one key in order, commits an offset only once every
// message before it has been handled (its effects durable), and routes
// unparseable messages to the dead-letter topic.
//
// Delivery is at least once: after a crash or around a rebalance a message
// can arrive again. The handler's idempotency in the database is the guard,
// not the consumer.
package consumer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/segmentio/kafka-go"

	"github.com/payflow/payflow/kafkaconf"
)

// Handler handles one message. It returns nil when the message's effects are
// durable, a *DeadLetterError when the message must go to the dead-letter
// topic, and any other error when it could not be handled for now: the
// consumer retries it with backoff, without bound when Config.Retry calls
// the error temporary (the database is down), else at most MaxAttempts
// times before it dead-letters the message. It never skips one.
type Handler func(ctx context.Context, m kafka.Message) error

// DeadLetterError marks a message that can never be handled.
type DeadLetterError struct{ Err error }

func (e *DeadLetterError) Error() string { return "dead letter: " + e.Err.Error() }
func (e *DeadLetterError) Unwrap() error { return e.Err }

// DeadLetter wraps err so the consumer dead-letters the message.
func DeadLetter(err error) error { return &DeadLetterError{Err: err} }

// DeadLetterer writes a message to the dead-letter topic.
type DeadLetterer interface {
	DeadLetter(ctx context.Context, m kafka.Message, cause error) error
}

// Config configures a Consumer.
type Config struct {
	Brokers []string
	// Dialer, when set, opens the reader's connections: TLS and SASL (see
	// kafkaconf.Dial.Dialer). Nil: kafka-go's default, plaintext.
	Dialer  *kafka.Dialer
	GroupID string
	Topic   string
	Handler Handler
	DLQ     DeadLetterer
	Logger  *slog.Logger
	// MaxInFlight bounds the messages fetched but not yet handled. When it
	// is reached the consumer stops fetching: a slow PG slows intake
	// instead of growing memory.
	MaxInFlight int
	// CommitInterval is how often the finished offsets are committed.
	CommitInterval time.Duration
	// ShutdownGrace is how long in-flight messages may run after the
	// consumer is asked to stop; after it their contexts are cancelled and
	// they are left uncommitted, to be redelivered.
	ShutdownGrace time.Duration
	// Observer, when set, hears each attempt at a message and each dead
	// letter, for metrics and tracing.
	Observer Observer
	// Retry classifies a handler error that is not a dead letter. True:
	// the error waits on something that comes back (the database, the PG,
	// an earlier request of the same charge), and the message is retried
	// without bound. False: the message itself may be at fault, so after
	// MaxAttempts such failures it is dead-lettered with the last error
	// instead of holding an in-flight slot, and its partition's commits,
	// for ever. Nil retries every error without bound.
	Retry func(err error) bool
	// Waiting, when set, tells an error that only means "an earlier request
	// of this key is still being worked on" (the worker's busy charge):
	// such a message is retried without bound like a temporary one, and
	// its retries are logged at debug level, not as errors.
	Waiting func(err error) bool
	// MaxAttempts bounds the attempts at a message whose errors Retry does
	// not call temporary (default 5).
	MaxAttempts int
	// SessionTimeout is how long the group waits for a silent member before
	// giving its partitions to others (kafka-go's default is 30 s). A
	// crashed worker's partitions are idle that long.
	SessionTimeout time.Duration
}

// Observer hears what the consumer does. As every payflow observer, a
// method that returns a context and a func starts something (a span, a
// clock): the handler runs with that context, and the func is called once,
// with how it ended.
type Observer interface {
	// Attempt starts one attempt at m. end is told the handler's error:
	// nil when the message is done, a *DeadLetterError when it goes to the
	// dead-letter topic, any other error when it is tried again.
	Attempt(ctx context.Context, m kafka.Message) (_ context.Context, end func(error))
	// DeadLettered is called once m is in the dead-letter topic, with the
	// cause; errors.Is(cause, ErrRetriesExhausted) tells a message given up
	// on from one the handler dead-lettered.
	DeadLettered(m kafka.Message, cause error)
}

type noObserver struct{}

func (noObserver) Attempt(ctx context.Context, _ kafka.Message) (context.Context, func(error)) {
	return ctx, func(error) {}
}
func (noObserver) DeadLettered(kafka.Message, error) {}

// Consumer reads the request topic.
type Consumer struct {
	cfg    Config
	reader *kafka.Reader
	offs   *offsets
	sem    chan struct{}

	mu    sync.Mutex
	lanes map[string][]kafka.Message // key → messages waiting behind the running one
	wg    sync.WaitGroup
}

// New returns a consumer; Run starts it.
func New(cfg Config) *Consumer {
	if cfg.MaxInFlight <= 0 {
		cfg.MaxInFlight = 512
	}
	if cfg.CommitInterval <= 0 {
		cfg.CommitInterval = 200 * time.Millisecond
	}
	if cfg.ShutdownGrace <= 0 {
		cfg.ShutdownGrace = 10 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Observer == nil {
		cfg.Observer = noObserver{}
	}
	if cfg.SessionTimeout <= 0 {
		cfg.SessionTimeout = 10 * time.Second
	}
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = 5
	}
	return &Consumer{
		cfg:   cfg,
		offs:  newOffsets(),
		sem:   make(chan struct{}, cfg.MaxInFlight),
		lanes: map[string][]kafka.Message{},
		reader: kafka.NewReader(kafka.ReaderConfig{
			Brokers:           cfg.Brokers,
			Dialer:            cfg.Dialer,
			GroupID:           cfg.GroupID,
			Topic:             cfg.Topic,
			MinBytes:          1,
			MaxBytes:          8 << 20,
			MaxWait:           250 * time.Millisecond,
			QueueCapacity:     cfg.MaxInFlight,
			StartOffset:       kafka.FirstOffset, // a new group must not skip requests already waiting
			CommitInterval:    0,                 // commits are explicit, see commitLoop
			SessionTimeout:    cfg.SessionTimeout,
			RebalanceTimeout:  cfg.SessionTimeout,
			HeartbeatInterval: cfg.SessionTimeout / 6,
			// kafka-go logs through these; only errors are worth showing.
			ErrorLogger: kafka.LoggerFunc(func(msg string, args ...any) {
				cfg.Logger.Warn("kafka reader", "brokers", cfg.Brokers, "detail", fmt.Sprintf(msg, args...))
			}),
		}),
	}
}

// Run consumes until ctx ends, then stops fetching, lets in-flight messages
// finish within ShutdownGrace, commits what finished and closes the reader.
//
// With TLS or SASL configured, Run first connects to a broker once: when
// the broker refuses the credentials or the TLS handshake, Run closes the
// reader and returns that error, naming the broker, instead of retrying
// what waiting does not fix. A broker that cannot be reached is waited for.
func (c *Consumer) Run(ctx context.Context) error {
	if err := c.checkSecurity(ctx); err != nil {
		_ = c.reader.Close()
		return err
	}
	// Handlers get a context that outlives ctx by the grace period, so a
	// shutdown lets a PG call in progress complete and record its result.
	hctx, hcancel := context.WithCancel(context.WithoutCancel(ctx))
	defer hcancel()

	commitDone := make(chan struct{})
	commitCtx, stopCommit := context.WithCancel(context.Background())
	go func() {
		defer close(commitDone)
		c.commitLoop(commitCtx)
	}()

	err := c.fetchLoop(ctx, hctx)

	drained := make(chan struct{})
	go func() { c.wg.Wait(); close(drained) }()
	select {
	case <-drained:
	case <-time.After(c.cfg.ShutdownGrace):
		c.cfg.Logger.Warn("shutdown grace over; abandoning in-flight messages", "in_flight", c.offs.inFlight())
		hcancel()
		<-drained
	}
	stopCommit()
	<-commitDone
	c.commit(context.Background())
	if cerr := c.reader.Close(); cerr != nil && err == nil {
		err = cerr
	}
	return err
}

// fetchLoop feeds messages to their lanes until ctx ends. kafka-go hands
// partition and group errors (a leader moving, a coordinator changing)
// through FetchMessage and recovers from them itself, so an error here is
// waited out with backoff, not a reason to stop consuming.
func (c *Consumer) fetchLoop(ctx, hctx context.Context) error {
	b := backoff.NewExponentialBackOff()
	b.InitialInterval, b.MaxInterval, b.MaxElapsedTime = 100*time.Millisecond, 5*time.Second, 0
	for {
		select {
		case c.sem <- struct{}{}:
		case <-ctx.Done():
			return nil
		}
		m, err := c.reader.FetchMessage(ctx)
		if err != nil {
			<-c.sem
			if ctx.Err() != nil {
				return nil
			}
			wait := b.NextBackOff()
			c.cfg.Logger.Warn("fetch failed; retrying", "brokers", c.cfg.Brokers, "err", err, "retry_in", wait)
			select {
			case <-time.After(wait):
			case <-ctx.Done():
				return nil
			}
			continue
		}
		b.Reset()
		c.offs.start(m.Partition, m.Offset)
		c.dispatch(hctx, m)
	}
}

// checkSecurity reports a broker refusing the configured TLS or SASL. Every
// broker must refuse: one that cannot be reached says nothing about the
// credentials.
func (c *Consumer) checkSecurity(ctx context.Context) error {
	d := c.cfg.Dialer
	if d == nil || (d.TLS == nil && d.SASLMechanism == nil) {
		return nil
	}
	var errs []error
	for _, b := range c.cfg.Brokers {
		conn, err := d.DialContext(ctx, "tcp", b)
		if err == nil {
			conn.Close()
			return nil
		}
		if !kafkaconf.Refused(err) {
			return nil
		}
		errs = append(errs, kafkaconf.BrokerError(b, err))
	}
	return fmt.Errorf("consumer: %w", errors.Join(errs...))
}

// dispatch runs m now, or queues it behind the running message of its key.
func (c *Consumer) dispatch(ctx context.Context, m kafka.Message) {
	key := laneKey(m)
	c.mu.Lock()
	if q, busy := c.lanes[key]; busy {
		c.lanes[key] = append(q, m)
		c.mu.Unlock()
		return
	}
	c.lanes[key] = nil
	c.mu.Unlock()
	c.wg.Add(1)
	go c.runLane(ctx, key, m)
}

func laneKey(m kafka.Message) string {
	if len(m.Key) == 0 {
		// No key, no order to keep: each message is its own lane.
		return fmt.Sprintf("\x00%d/%d", m.Partition, m.Offset)
	}
	return string(m.Key)
}

func (c *Consumer) runLane(ctx context.Context, key string, m kafka.Message) {
	defer c.wg.Done()
	for {
		if !c.handle(ctx, m) {
			c.abandon(key)
			return
		}
		c.offs.finish(m.Partition, m.Offset)
		<-c.sem
		c.mu.Lock()
		q := c.lanes[key]
		if len(q) == 0 {
			delete(c.lanes, key)
			c.mu.Unlock()
			return
		}
		m, c.lanes[key] = q[0], q[1:]
		c.mu.Unlock()
	}
}

// abandon gives up a lane at an abandoned shutdown: its running message and
// those queued behind it stay unfinished, so no commit passes them and the
// partition's next owner gets them again.
func (c *Consumer) abandon(key string) {
	c.mu.Lock()
	n := 1 + len(c.lanes[key])
	delete(c.lanes, key)
	c.mu.Unlock()
	for range n {
		<-c.sem
	}
}

// ErrRetriesExhausted is wrapped by the cause of a message dead-lettered
// because its errors were not temporary and MaxAttempts ran out.
var ErrRetriesExhausted = errors.New("retries exhausted")

// handle runs the handler until the message is done: its effects durable,
// or the message in the dead-letter topic. It returns false only when ctx
// ended first (an abandoned shutdown); the message is then not done.
func (c *Consumer) handle(ctx context.Context, m kafka.Message) bool {
	b := retryBackOff()
	failures := 0
	for attempt := 1; ; attempt++ {
		actx, end := c.cfg.Observer.Attempt(ctx, m)
		err := c.call(actx, m)
		end(err)
		var dl *DeadLetterError
		isDL := errors.As(err, &dl)
		switch {
		case err == nil:
			return true
		case isDL:
			return c.deadLetter(ctx, m, dl.Err, false)
		case ctx.Err() != nil:
			return false // ended by the shutdown, not by the message
		case c.cfg.Waiting != nil && c.cfg.Waiting(err):
			wait := b.NextBackOff()
			c.cfg.Logger.Debug("message waits for an earlier one of its key", "partition", m.Partition, "offset", m.Offset,
				"attempt", attempt, "retry_in", wait)
			if !sleep(ctx, wait) {
				return false
			}
			continue
		case c.cfg.Retry != nil && !c.cfg.Retry(err):
			if failures++; failures >= c.cfg.MaxAttempts {
				return c.deadLetter(ctx, m, fmt.Errorf("%w after %d attempts: %w", ErrRetriesExhausted, attempt, err), true)
			}
		}
		wait := b.NextBackOff()
		c.cfg.Logger.Error("message not handled; retrying", "partition", m.Partition, "offset", m.Offset,
			"attempt", attempt, "err", redact(err, m.Value), "retry_in", wait)
		if !sleep(ctx, wait) {
			return false
		}
	}
}

// ErrHandlerPanicked is wrapped by the error of an attempt whose handler
// panicked.
var ErrHandlerPanicked = errors.New("handler panicked")

// call runs the handler once. A panic is that attempt's error, which is
// retried and then dead-lettered like any error that is not temporary:
// one message's bug fails that message, not the process with every lane in
// it (and, after a restart, every member that is given its partition). Its
// stack goes to the log, not into the error, which a dead letter carries.
func (c *Consumer) call(ctx context.Context, m kafka.Message) (err error) {
	defer func() {
		if r := recover(); r != nil {
			c.cfg.Logger.Error("handler panicked", "partition", m.Partition, "offset", m.Offset, "stack", string(debug.Stack()))
			err = redact(fmt.Errorf("%w: %v", ErrHandlerPanicked, r), m.Value)
		}
	}()
	return c.cfg.Handler(ctx, m)
}

// deadLetter writes m to the dead-letter topic, retrying until it is there:
// a message is never skipped silently. When the topic refuses the copy (a
// value just under the broker's limit is over it once the dead-letter
// headers are added) or keeps failing, it writes a Stub instead, which
// locates the original. It returns false only when ctx ended first.
//
// The cause goes into a log line and a header: whatever of the message it
// quotes is masked first (see redact).
func (c *Consumer) deadLetter(ctx context.Context, m kafka.Message, cause error, gaveUp bool) bool {
	cause = redact(cause, m.Value)
	log := c.cfg.Logger.With("partition", m.Partition, "offset", m.Offset)
	b := retryBackOff()
	msg, stub := m, false
	for attempt := 1; ; attempt++ {
		err := c.cfg.DLQ.DeadLetter(ctx, msg, cause)
		if err == nil {
			if gaveUp {
				log.Error("message failed on every attempt; dead-lettered", "err", cause, "stub", stub)
			} else {
				log.Warn("dead-lettered message", "err", cause, "stub", stub)
			}
			c.cfg.Observer.DeadLettered(m, cause)
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		if !stub && (refused(err) || attempt >= stubAfter) {
			log.Error("dead-letter topic does not take the message; writing it without its value",
				"err", err, "attempt", attempt, "value_bytes", len(m.Value))
			msg, stub = Stub(m), true
			continue
		}
		wait := b.NextBackOff()
		log.Error("dead letter not written; retrying", "err", err, "stub", stub, "attempt", attempt, "retry_in", wait)
		if !sleep(ctx, wait) {
			return false
		}
	}
}

func retryBackOff() *backoff.ExponentialBackOff {
	b := backoff.NewExponentialBackOff()
	b.InitialInterval, b.MaxInterval, b.MaxElapsedTime = 100*time.Millisecond, 5*time.Second, 0
	b.Reset()
	return b
}

// sleep waits d, or reports false when ctx ends first.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

func (c *Consumer) commitLoop(ctx context.Context) {
	t := time.NewTicker(c.cfg.CommitInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			c.commit(ctx)
		}
	}
}

// commit commits each partition's position. kafka-go commits message offset
// + 1, so the message before the position stands for it.
func (c *Consumer) commit(ctx context.Context) {
	pos := c.offs.commitable()
	if len(pos) == 0 {
		return
	}
	msgs := make([]kafka.Message, 0, len(pos))
	for part, p := range pos {
		msgs = append(msgs, kafka.Message{Topic: c.cfg.Topic, Partition: part, Offset: p - 1})
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := c.reader.CommitMessages(cctx, msgs...); err != nil {
		// Typical around a rebalance; the next commit carries the same
		// positions, and whatever is not committed is redelivered.
		c.cfg.Logger.Warn("offset commit failed", "err", err)
		return
	}
	for part, p := range pos {
		c.offs.committed(part, p)
	}
}

// OldestInFlight is the age of the oldest message fetched and not yet
// finished (handled or dead-lettered), 0 when there is none: a message
// stuck in its handler shows here, while lag and throughput may look fine.
func (c *Consumer) OldestInFlight() time.Duration { return c.offs.oldest(time.Now()) }

// Stats are the reader's counters, for metrics (lag among them).
func (c *Consumer) Stats() kafka.ReaderStats { return c.reader.Stats() }
