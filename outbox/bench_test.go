package outbox_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/payflow/payflow/devenv"
	"github.com/payflow/payflow/internal/testdb"
	"github.com/payflow/payflow/outbox"
	"github.com/payflow/payflow/producer"
)

func BenchmarkInsert(b *testing.B) {
	db := testdb.Pool(b)
	ctx := context.Background()
	value := make([]byte, 300)
	i := 0
	for b.Loop() {
		i++
		m := msg(fmt.Sprint("c", i), "v")
		m.Value = value
		if err := outbox.Insert(ctx, db, m); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPublishBatch is one relay iteration: read a batch of rows,
// publish them to the embedded broker with kafka-go (acks=all, 12
// partitions), mark them published. It reports ns per row.
func BenchmarkPublishBatch(b *testing.B) {
	for _, size := range []int{100, 1000} {
		b.Run(fmt.Sprint("rows=", size), func(b *testing.B) {
			db := testdb.Pool(b)
			k, err := devenv.StartKafka("")
			if err != nil {
				b.Fatal(err)
			}
			defer k.Close()
			ctx := context.Background()
			if err := producer.EnsureTopics(ctx, []string{k.Addr()}, producer.Topics(12)); err != nil {
				b.Fatal(err)
			}
			w := producer.NewWriter([]string{k.Addr()})
			defer w.Close()
			r := &outbox.Relay{Pool: db, Publisher: w, BatchSize: size}
			value := make([]byte, 300)
			n := 0
			for b.Loop() {
				b.StopTimer()
				msgs := make([]outbox.Message, size)
				for i := range msgs {
					n++
					msgs[i] = msg(fmt.Sprint("charge-", n), fmt.Sprint(n))
					msgs[i].Value = value
				}
				if err := outbox.Insert(ctx, db, msgs...); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				got, err := r.PublishBatch(ctx)
				if err != nil || got != size {
					b.Fatalf("published %d, %v", got, err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*size), "ns/row")
		})
	}
}
