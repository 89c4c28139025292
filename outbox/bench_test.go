package outbox_test

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

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

// BenchmarkRelayLagAt2000PerSecond commits outbox rows at 2,000 a second
// (one per transaction, as the worker does) while the relay runs, and reports
// the relay's own commit-to-published lag percentiles: the relay alone,
// without the worker, simulator and consumers competing for the CPU.
func BenchmarkRelayLagAt2000PerSecond(b *testing.B) {
	db := testdb.Pool(b)
	k, err := devenv.StartKafka("")
	if err != nil {
		b.Fatal(err)
	}
	defer k.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := producer.EnsureTopics(ctx, []string{k.Addr()}, producer.Topics(12)); err != nil {
		b.Fatal(err)
	}
	w := producer.NewWriter([]string{k.Addr()})
	defer w.Close()
	var mu sync.Mutex
	var lags []time.Duration
	r := &outbox.Relay{Pool: db, Publisher: w, Observer: lagObserver(func(d time.Duration) { mu.Lock(); lags = append(lags, d); mu.Unlock() })}
	go r.Run(ctx)
	value := make([]byte, 300)
	const rate, seconds = 2000, 5
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		var wg sync.WaitGroup
		for j := 0; j < rate*seconds; j++ {
			time.Sleep(time.Until(start.Add(time.Duration(j) * time.Second / rate)))
			wg.Add(1)
			go func(j int) {
				defer wg.Done()
				m := msg(fmt.Sprint("c", i, "-", j), "v")
				m.Value = value
				if err := outbox.Insert(ctx, db, m); err != nil {
					b.Error(err)
				}
				r.Wake()
			}(j)
		}
		wg.Wait()
	}
	time.Sleep(time.Second)
	mu.Lock()
	defer mu.Unlock()
	sort.Slice(lags, func(i, j int) bool { return lags[i] < lags[j] })
	if len(lags) == 0 {
		b.Fatal("nothing published")
	}
	b.ReportMetric(float64(lags[len(lags)/2].Milliseconds()), "p50-ms")
	b.ReportMetric(float64(lags[len(lags)*99/100].Milliseconds()), "p99-ms")
}

// lagObserver hears only how long rows waited.
type lagObserver func(time.Duration)

func (lagObserver) Publish(ctx context.Context, _ outbox.Message) (context.Context, func(error)) {
	return ctx, func(error) {}
}
func (f lagObserver) Published(lag time.Duration) { f(lag) }
