package consumer_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/payflow/payflow/consumer"
	"github.com/payflow/payflow/producer"
)

// The lag is per partition, from the group's committed offsets: partitions
// the group never committed count whole, and one consumer's progress on
// some partitions does not hide what waits on the others.
func TestGroupLagIsPerPartitionFromCommittedOffsets(t *testing.T) {
	addr := broker(t, producer.Topic{Name: "in", Partitions: 3})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cl := &kafka.Client{Addr: kafka.TCP(addr), Timeout: 5 * time.Second}
	// 5, 3 and 1 messages in partitions 0, 1 and 2.
	counts := map[int]int{0: 5, 1: 3, 2: 1}
	for p, n := range counts {
		// RequireAll: WriteMessages returns once the broker holds the
		// message, so the offsets read next include it.
		w := &kafka.Writer{Addr: kafka.TCP(addr), Topic: "in", BatchTimeout: time.Millisecond, RequiredAcks: kafka.RequireAll,
			Balancer: kafka.BalancerFunc(func(kafka.Message, ...int) int { return p })}
		for i := range n {
			if err := w.WriteMessages(ctx, kafka.Message{Key: []byte(fmt.Sprint(p, i)), Value: []byte("v")}); err != nil {
				t.Fatal(err)
			}
		}
		w.Close()
	}
	lag, err := consumer.GroupLag(ctx, cl, "g", "in")
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(lag) != "map[0:5 1:3 2:1]" {
		t.Fatalf("lag before the group committed = %v, want map[0:5 1:3 2:1]", lag)
	}

	// A consumer finishes every message; the lag drops to 0 everywhere.
	handled := make(chan struct{}, 9)
	c := consumer.New(consumer.Config{
		Brokers: []string{addr}, GroupID: "g", Topic: "in", CommitInterval: 20 * time.Millisecond,
		Logger:  slog.New(slog.NewTextHandler(io.Discard, nil)),
		Handler: func(context.Context, kafka.Message) error { handled <- struct{}{}; return nil },
	})
	cctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- c.Run(cctx) }()
	for range 9 {
		select {
		case <-handled:
		case <-ctx.Done():
			t.Fatal("messages not handled")
		}
	}
	eventually(t, "the lag to reach 0 on every partition", func() bool {
		lag, err := consumer.GroupLag(ctx, cl, "g", "in")
		return err == nil && fmt.Sprint(lag) == "map[0:0 1:0 2:0]"
	})
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	// Two more in partition 1 only: the lag says where.
	w := &kafka.Writer{Addr: kafka.TCP(addr), Topic: "in", BatchTimeout: time.Millisecond, RequiredAcks: kafka.RequireAll,
		Balancer: kafka.BalancerFunc(func(kafka.Message, ...int) int { return 1 })}
	defer w.Close()
	if err := w.WriteMessages(ctx, kafka.Message{Value: []byte("a")}, kafka.Message{Value: []byte("b")}); err != nil {
		t.Fatal(err)
	}
	if lag, err := consumer.GroupLag(ctx, cl, "g", "in"); err != nil || fmt.Sprint(lag) != "map[0:0 1:2 2:0]" {
		t.Fatalf("lag = %v, %v; want map[0:0 1:2 2:0]", lag, err)
	}
}
