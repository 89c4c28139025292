package producer_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/payflow/payflow/devenv"
	"github.com/payflow/payflow/events"
	"github.com/payflow/payflow/kafkaconf"
	"github.com/payflow/payflow/outbox"
	"github.com/payflow/payflow/producer"
)

var renamed = kafkaconf.Topics{Requests: "shop.pay.in", Events: "shop.pay.out", DLQ: "shop.pay.dlq"}

func readOne(t *testing.T, addr, topic string) kafka.Message {
	t.Helper()
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: []string{addr}, Topic: topic, Partition: 0, MaxWait: 50 * time.Millisecond})
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	m, err := r.ReadMessage(ctx)
	if err != nil {
		t.Fatalf("reading %s: %v", topic, err)
	}
	return m
}

// With renamed topics, outbox rows addressed to the contract's result
// topic (as the worker writes them) are published to the configured one,
// and dead letters go to the configured dead-letter topic.
func TestWriterPublishesToTheConfiguredTopics(t *testing.T) {
	k, err := devenv.StartKafka("")
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	addr := []string{k.Addr()}
	ctx := context.Background()
	if err := producer.EnsureTopics(ctx, addr, producer.TopicsNamed(renamed, 1)); err != nil {
		t.Fatal(err)
	}
	w := producer.NewWriter(addr, producer.WithTopics(renamed))
	defer w.Close()
	if err := w.Publish(ctx, []outbox.Message{{EventID: "e1", Topic: events.TopicEvents, Key: []byte("c-1"), Value: []byte("result")}}); err != nil {
		t.Fatal(err)
	}
	if m := readOne(t, k.Addr(), renamed.Events); string(m.Value) != "result" {
		t.Fatalf("published %q", m.Value)
	}
	if err := w.DeadLetter(ctx, kafka.Message{Topic: renamed.Requests, Key: []byte("c-2"), Value: []byte("junk")}, errors.New("unparseable")); err != nil {
		t.Fatal(err)
	}
	if m := readOne(t, k.Addr(), renamed.DLQ); string(m.Value) != "junk" {
		t.Fatalf("dead letter %q", m.Value)
	}
	if err := producer.Ping(ctx, addr, producer.WithTopics(renamed)); err != nil {
		t.Fatal(err)
	}
}

// CheckTopics names each topic that is missing, for a deployment that does
// not create them.
func TestCheckTopicsNamesTheMissing(t *testing.T) {
	k, err := devenv.StartKafka("")
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	addr := []string{k.Addr()}
	ctx := context.Background()
	if err := producer.EnsureTopics(ctx, addr, []producer.Topic{{Name: renamed.Requests, Partitions: 1}}); err != nil {
		t.Fatal(err)
	}
	err = producer.CheckTopics(ctx, addr, []string{renamed.Requests, renamed.Events, renamed.DLQ})
	if err == nil || strings.Contains(err.Error(), renamed.Requests) ||
		!strings.Contains(err.Error(), "topic shop.pay.out does not exist") || !strings.Contains(err.Error(), "topic shop.pay.dlq does not exist") {
		t.Fatalf("err = %v", err)
	}
	if err := producer.EnsureTopics(ctx, addr, producer.TopicsNamed(renamed, 1)); err != nil {
		t.Fatal(err)
	}
	if err := producer.CheckTopics(ctx, addr, []string{renamed.Requests, renamed.Events, renamed.DLQ}); err != nil {
		t.Fatal(err)
	}
}

// One Publish goes out as at most one produce request per partition it
// touches, however short the writer's batch timeout: the relay batches
// already, and a split batch would cost a round trip per piece.
func TestPublishIsOneRequestPerPartition(t *testing.T) {
	k, err := devenv.StartKafka("")
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	var mu sync.Mutex
	batches := map[int32]int{} // record batches received, by partition
	k.Cluster().ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
		k.Cluster().KeepControl()
		mu.Lock()
		defer mu.Unlock()
		for _, tp := range req.(*kmsg.ProduceRequest).Topics {
			for _, p := range tp.Partitions {
				batches[p.Partition]++
			}
		}
		return nil, nil, false
	})
	addr := []string{k.Addr()}
	ctx := context.Background()
	if err := producer.EnsureTopics(ctx, addr, producer.TopicsNamed(kafkaconf.Topics{}, 4)); err != nil {
		t.Fatal(err)
	}
	w := producer.NewWriter(addr)
	defer w.Close()
	msgs := make([]outbox.Message, 500)
	for i := range msgs {
		msgs[i] = outbox.Message{EventID: fmt.Sprint("e", i), Topic: events.TopicEvents, Key: []byte(fmt.Sprint("c-", i)), Value: []byte("result")}
	}
	for round := 1; round <= 3; round++ {
		if err := w.Publish(ctx, msgs); err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		for p, n := range batches {
			if n != round {
				t.Errorf("after %d publications, partition %d received %d batches", round, p, n)
			}
		}
		if len(batches) != 4 {
			t.Errorf("batches reached %d partitions, want 4: %v", len(batches), batches)
		}
		mu.Unlock()
	}
}
