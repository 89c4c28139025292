// Package producer owns payflow's writes to Kafka with kafka-go: publishing
// outbox batches to the result topic, dead-lettering unparseable input, and
// creating the contract's topics.
package producer

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/payflow/payflow/events"
	"github.com/payflow/payflow/outbox"
)

// Writer publishes to Kafka. Messages are keyed by charge id and partitioned
// by a hash of the key, so every event of one charge lands on one partition
// in the order written.
type Writer struct {
	w *kafka.Writer
}

// NewWriter returns a synchronous writer: Publish returns once every message
// is acknowledged by all in-sync replicas.
func NewWriter(brokers []string) *Writer {
	return &Writer{w: &kafka.Writer{
		Addr:         kafka.TCP(brokers...),
		Balancer:     &kafka.Hash{},
		RequiredAcks: kafka.RequireAll,
		// kafka-go sends a partition's batch when it is full or this much
		// time has passed; the relay already batches, so waiting longer
		// only adds latency.
		BatchTimeout: 2 * time.Millisecond,
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
			Topic: m.Topic,
			Key:   m.Key,
			Value: m.Value,
			Headers: []kafka.Header{
				contentType,
				{Key: "ce_id", Value: []byte(m.EventID)},
			},
		}
	}
	return w.w.WriteMessages(ctx, out...)
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
	return w.w.WriteMessages(ctx, kafka.Message{
		Topic:   events.TopicDLQ,
		Key:     src.Key,
		Value:   src.Value,
		Headers: headers,
	})
}

// Close flushes and closes the writer.
func (w *Writer) Close() error { return w.w.Close() }

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
func Topics(partitions int) []Topic {
	return []Topic{
		{events.TopicRequests, partitions},
		{events.TopicEvents, partitions},
		{events.TopicDLQ, 1},
	}
}

// EnsureTopics creates the topics that do not exist yet. Existing topics are
// left as they are.
func EnsureTopics(ctx context.Context, brokers []string, topics []Topic) error {
	cl := &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: 10 * time.Second}
	req := &kafka.CreateTopicsRequest{}
	for _, t := range topics {
		req.Topics = append(req.Topics, kafka.TopicConfig{Topic: t.Name, NumPartitions: t.Partitions, ReplicationFactor: -1})
	}
	resp, err := cl.CreateTopics(ctx, req)
	if err != nil {
		return fmt.Errorf("producer: create topics: %w", err)
	}
	for name, terr := range resp.Errors {
		if terr != nil && !errors.Is(terr, kafka.TopicAlreadyExists) {
			return fmt.Errorf("producer: create topic %s: %w", name, terr)
		}
	}
	return nil
}

// Ping checks that a broker answers, for readiness.
func Ping(ctx context.Context, brokers []string) error {
	cl := &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: 5 * time.Second}
	_, err := cl.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{events.TopicRequests}})
	return err
}
