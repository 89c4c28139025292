// Package producer owns payflow's writes to Kafka with kafka-go: publishing
// outbox batches to the result topic, dead-lettering unparseable input, and
// creating the contract's topics.
package producer

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/payflow/payflow/events"
	"github.com/payflow/payflow/kafkaconf"
	"github.com/payflow/payflow/outbox"
)

// Option configures a Writer and the admin calls (EnsureTopics, Ping).
type Option func(*options)

type options struct {
	dial   *kafkaconf.Dial
	topics kafkaconf.Topics
}

// WithSecurity connects with d's TLS and SASL; without it, in plaintext.
func WithSecurity(d *kafkaconf.Dial) Option { return func(o *options) { o.dial = d } }

// WithTopics names the topics; without it, or for a name left empty, the
// contract's names are used.
func WithTopics(t kafkaconf.Topics) Option { return func(o *options) { o.topics = t } }

func apply(opts []Option) options {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	o.topics = o.topics.WithDefaults()
	return o
}

// topic is where a message addressed to one of the contract's topics goes:
// the worker writes its outbox rows to events.TopicEvents, and the name
// configured for that role is decided here, when they are published. Rows
// written before a rename go to the new name as well.
func (o options) topic(name string) string {
	switch name {
	case events.TopicRequests:
		return o.topics.Requests
	case events.TopicEvents:
		return o.topics.Events
	case events.TopicDLQ:
		return o.topics.DLQ
	}
	return name
}

// brokerErr names the brokers an error came from (see kafkaconf.BrokerError).
func brokerErr(brokers []string, err error) error {
	return kafkaconf.BrokerError(strings.Join(brokers, ","), err)
}

// explain names the brokers an error came from. kafka-go's transport
// reports a broker that refused the TLS handshake or the SASL credentials
// as unavailable, or as an unexpected EOF: with security configured, a
// failure that could be a refused connection is explained by connecting
// once more directly, which does say what was refused.
func (o options) explain(ctx context.Context, brokers []string, err error) error {
	if err == nil {
		return nil
	}
	var kerr kafka.Error
	if o.dial.Secured() && !kafkaconf.Refused(err) && (!errors.As(err, &kerr) || errors.Is(err, kafka.BrokerNotAvailable)) {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if cerr := o.dial.Check(cctx, brokers); errors.Is(cerr, kafkaconf.ErrRefused) {
			return fmt.Errorf("%w (the request failed with: %v)", cerr, err)
		}
	}
	return brokerErr(brokers, err)
}

// Writer publishes to Kafka. Messages are keyed by charge id and partitioned
// by a hash of the key, so every event of one charge lands on one partition
// in the order written.
type Writer struct {
	w       *kafka.Writer
	brokers []string
	opts    options
}

// NewWriter returns a synchronous writer: Publish returns once every message
// is acknowledged by all in-sync replicas.
func NewWriter(brokers []string, opts ...Option) *Writer {
	o := apply(opts)
	var transport kafka.RoundTripper
	if t := o.dial.NewTransport(); t != nil {
		transport = t
	}
	return &Writer{brokers: brokers, opts: o, w: &kafka.Writer{
		Addr:         kafka.TCP(brokers...),
		Transport:    transport,
		Balancer:     &kafka.Hash{},
		RequiredAcks: kafka.RequireAll,
		// kafka-go sends a partition's batch when it is full or this much
		// time has passed. The relay already batches: one Publish adds
		// all its messages before the timer can detach a batch, so the
		// timeout only delays the send (2 ms of a relay iteration's ~5 ms
		// at half load, before it was cut to this).
		// TestPublishIsOneRequestPerPartition checks that no Publish is
		// split.
		BatchTimeout: 100 * time.Microsecond,
		BatchSize:    1000,
		BatchBytes:   16 << 20,
		// A partition's batches are written one after another, and a
		// failed batch fails Publish: the relay retries the whole batch,
		// which keeps order per key (with duplicates, deduped by event id).
		MaxAttempts:            3,
		WriteBackoffMin:        50 * time.Millisecond,
		WriteBackoffMax:        time.Second,
		AllowAutoTopicCreation: false,
	}}
}

// contentType is the header every payflow message carries.
var contentType = kafka.Header{Key: "content-type", Value: []byte(events.ContentType)}

// Publish implements outbox.Publisher.
func (w *Writer) Publish(ctx context.Context, msgs []outbox.Message) error {
	out := make([]kafka.Message, len(msgs))
	for i, m := range msgs {
		out[i] = kafka.Message{
			Topic: w.opts.topic(m.Topic),
			Key:   m.Key,
			Value: m.Value,
			Headers: []kafka.Header{
				contentType,
				{Key: "ce_id", Value: []byte(m.EventID)},
			},
		}
		// The W3C trace context (the CloudEvents distributed-tracing
		// extension, carried as headers) of the request that caused the event.
		if m.TraceParent != "" {
			out[i].Headers = append(out[i].Headers, kafka.Header{Key: "traceparent", Value: []byte(m.TraceParent)})
			if m.TraceState != "" {
				out[i].Headers = append(out[i].Headers, kafka.Header{Key: "tracestate", Value: []byte(m.TraceState)})
			}
		}
	}
	return w.write(ctx, out...)
}

func (w *Writer) write(ctx context.Context, msgs ...kafka.Message) error {
	return w.opts.explain(ctx, w.brokers, w.w.WriteMessages(ctx, msgs...))
}

// DeadLetter copies an unparseable input message unchanged to the DLQ topic,
// with headers naming the error and where it came from.
func (w *Writer) DeadLetter(ctx context.Context, src kafka.Message, cause error) error {
	headers := append([]kafka.Header{}, src.Headers...)
	headers = append(headers,
		kafka.Header{Key: "dlq-error", Value: []byte(truncate(cause.Error(), 1024))},
		kafka.Header{Key: "dlq-source-topic", Value: []byte(src.Topic)},
		kafka.Header{Key: "dlq-source-partition", Value: []byte(strconv.Itoa(src.Partition))},
		kafka.Header{Key: "dlq-source-offset", Value: []byte(strconv.FormatInt(src.Offset, 10))},
		kafka.Header{Key: "dlq-time", Value: []byte(time.Now().UTC().Format(events.TimeFormat))},
	)
	return w.write(ctx, kafka.Message{
		Topic:   w.opts.topics.DLQ,
		Key:     src.Key,
		Value:   src.Value,
		Headers: headers,
	})
}

// Close flushes and closes the writer, and its connections.
func (w *Writer) Close() error {
	err := w.w.Close()
	if t, ok := w.w.Transport.(*kafka.Transport); ok {
		t.CloseIdleConnections()
	}
	return err
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

// Topic is a topic payflow needs.
type Topic struct {
	Name       string
	Partitions int
}

// Topics are the contract's topics with their partition counts.
func Topics(partitions int) []Topic { return TopicsNamed(kafkaconf.DefaultTopics(), partitions) }

// TopicsNamed are payflow's topics under the names t gives them (the
// contract's where t leaves one empty), with their partition counts.
func TopicsNamed(t kafkaconf.Topics, partitions int) []Topic {
	t = t.WithDefaults()
	return []Topic{
		{t.Requests, partitions},
		{t.Events, partitions},
		{t.DLQ, 1},
	}
}

// CheckTopics reports the topics that do not exist, or that this client
// may not describe, for a deployment that does not create them.
func CheckTopics(ctx context.Context, brokers []string, names []string, opts ...Option) error {
	o := apply(opts)
	cl := &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: 10 * time.Second, Transport: o.dial.Transport()}
	resp, err := cl.Metadata(ctx, &kafka.MetadataRequest{Topics: names})
	if err != nil {
		return fmt.Errorf("producer: describe topics: %w", o.explain(ctx, brokers, err))
	}
	found := map[string]error{}
	for _, t := range resp.Topics {
		found[t.Name] = t.Error
	}
	var errs []error
	for _, n := range names {
		terr, ok := found[n]
		switch {
		case !ok || errors.Is(terr, kafka.UnknownTopicOrPartition):
			errs = append(errs, fmt.Errorf("topic %s does not exist", n))
		case terr != nil:
			errs = append(errs, fmt.Errorf("topic %s: %w", n, terr))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("producer: %w", errors.Join(errs...))
	}
	return nil
}

// EnsureTopics creates the topics that do not exist yet. Existing topics are
// left as they are.
func EnsureTopics(ctx context.Context, brokers []string, topics []Topic, opts ...Option) error {
	o := apply(opts)
	cl := &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: 10 * time.Second, Transport: o.dial.Transport()}
	req := &kafka.CreateTopicsRequest{}
	for _, t := range topics {
		req.Topics = append(req.Topics, kafka.TopicConfig{Topic: t.Name, NumPartitions: t.Partitions, ReplicationFactor: -1})
	}
	resp, err := cl.CreateTopics(ctx, req)
	if err != nil {
		return fmt.Errorf("producer: create topics: %w", o.explain(ctx, brokers, err))
	}
	for name, terr := range resp.Errors {
		if terr != nil && !errors.Is(terr, kafka.TopicAlreadyExists) {
			return fmt.Errorf("producer: create topic %s: %w", name, terr)
		}
	}
	return nil
}

// Ping checks that a broker answers, for readiness.
func Ping(ctx context.Context, brokers []string, opts ...Option) error {
	o := apply(opts)
	cl := &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: 5 * time.Second, Transport: o.dial.Transport()}
	_, err := cl.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{o.topics.Requests}})
	return o.explain(ctx, brokers, err)
}
