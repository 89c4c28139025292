package devenv_test

import (
	"context"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/segmentio/kafka-go"

	"github.com/payflow/payflow/devenv"
)

// kafka-go, payflow's client, works against the embedded broker: topics
// with 12 partitions, keyed produce, group consume and commit.
func TestEmbeddedKafkaSpeaksTheProtocol(t *testing.T) {
	k, err := devenv.StartKafka("")
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl := &kafka.Client{Addr: kafka.TCP(k.Addr())}
	if _, err := cl.CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{{Topic: "t", NumPartitions: 12, ReplicationFactor: 1}}}); err != nil {
		t.Fatal(err)
	}
	w := &kafka.Writer{Addr: kafka.TCP(k.Addr()), Topic: "t", Balancer: &kafka.Hash{}, BatchTimeout: time.Millisecond}
	defer w.Close()
	if err := w.WriteMessages(ctx, kafka.Message{Key: []byte("a"), Value: []byte("1")}, kafka.Message{Key: []byte("a"), Value: []byte("2")}); err != nil {
		t.Fatal(err)
	}
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: []string{k.Addr()}, GroupID: "g", Topic: "t", MaxWait: 50 * time.Millisecond})
	defer r.Close()
	for _, want := range []string{"1", "2"} {
		m, err := r.FetchMessage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if string(m.Value) != want {
			t.Fatalf("got %s, want %s (same key, same order)", m.Value, want)
		}
		if err := r.CommitMessages(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
}

// The throwaway server path, even where DATABASE_URL or a local server
// exists.
func TestThrowawayPostgres(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a server")
	}
	ctx := context.Background()
	p, err := devenv.StartLocalPostgres(ctx, slog.New(slog.NewTextHandler(os.Stderr, nil)))
	if err != nil {
		t.Fatal(err)
	}
	c, err := pgx.Connect(ctx, p.DSN())
	if err != nil {
		p.Close()
		t.Fatal(err)
	}
	var one int
	err = c.QueryRow(ctx, "SELECT 1").Scan(&one)
	c.Close(ctx)
	p.Close()
	if err != nil || one != 1 {
		t.Fatalf("query: %v", err)
	}
	if _, err := pgx.Connect(ctx, p.DSN()); err == nil {
		t.Fatal("server still answers after Close")
	}
}

func TestThrowawayPostgresRestarts(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a server")
	}
	ctx := context.Background()
	p, err := devenv.StartLocalPostgres(ctx, slog.New(slog.NewTextHandler(os.Stderr, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c, err := pgx.Connect(ctx, p.DSN())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Exec(ctx, "CREATE TABLE kept (x int); INSERT INTO kept VALUES (7)"); err != nil {
		t.Fatal(err)
	}
	if err := p.Restart(); err != nil {
		t.Fatal(err)
	}
	if err := c.Ping(ctx); err == nil {
		t.Fatal("a connection survived the restart; it was not one")
	}
	c, err = pgx.Connect(ctx, p.DSN())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	var x int
	if err := c.QueryRow(ctx, "SELECT x FROM kept").Scan(&x); err != nil || x != 7 {
		t.Fatalf("data after restart: %d %v", x, err)
	}
}
