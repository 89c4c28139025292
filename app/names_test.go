package app_test

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/payflow/payflow/app"
	"github.com/payflow/payflow/devenv"
	"github.com/payflow/payflow/internal/testdb"
	"github.com/payflow/payflow/kafkaconf"
	"github.com/payflow/payflow/producer"
	"github.com/payflow/payflow/stdwebhook"
	"github.com/payflow/payflow/store"
	"github.com/payflow/payflow/vault"
)

var renamed = kafkaconf.Topics{Requests: "shop.pay.in", Events: "shop.pay.out", DLQ: "shop.pay.dlq"}

// A deployment whose principal may not create topics and whose database
// user may not run DDL: the topics (renamed) exist beforehand, the schema
// is applied by a migration job, and payflow neither creates nor migrates.
// Requests are read from the configured topic in the configured group,
// results and dead letters go to the configured topics.
func TestRunWithRenamedTopicsWithoutCreatingOrMigrating(t *testing.T) {
	k, err := devenv.StartKafka("")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(k.Close)
	ctx := context.Background()
	if err := producer.EnsureTopics(ctx, []string{k.Addr()}, producer.TopicsNamed(renamed, 1)); err != nil {
		t.Fatal(err)
	}
	dsn := testdb.NewDSN(t)
	if err := store.Migrate(ctx, dsn); err != nil { // the migration job
		t.Fatal(err)
	}
	p := startOn(t, k.Addr(), acceptingPG(), func(c *app.Config) {
		c.DatabaseURL, c.Topics, c.GroupID = dsn, renamed, "shop-payflow"
		c.SkipTopicCreation, c.SkipMigration = true, true
	})
	w := &kafka.Writer{Addr: kafka.TCP(k.Addr()), Topic: renamed.Requests, BatchTimeout: time.Millisecond}
	defer w.Close()
	if err := w.WriteMessages(ctx, charge("c-1", "010-1234-5678"), kafka.Message{Key: []byte("c-2"), Value: []byte("not json")}); err != nil {
		t.Fatal(err)
	}
	if m := readEvent(t, k.Addr(), nil, renamed.Events, "payment.charge.processed"); string(m.Key) != "c-1" {
		t.Fatalf("result keyed %q", m.Key)
	}
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: []string{k.Addr()}, Topic: renamed.DLQ, Partition: 0, MaxWait: 50 * time.Millisecond})
	defer r.Close()
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if m, err := r.ReadMessage(rctx); err != nil || string(m.Key) != "c-2" {
		t.Fatalf("dead letter: %v %q", err, m.Key)
	}
	cl := &kafka.Client{Addr: kafka.TCP(k.Addr())}
	eventually(t, "the group shop-payflow to commit both requests", func() bool {
		resp, err := cl.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: "shop-payflow", Topics: map[string][]int{renamed.Requests: {0}}})
		return err == nil && len(resp.Topics[renamed.Requests]) == 1 && resp.Topics[renamed.Requests][0].CommittedOffset == 2
	})
	for _, topic := range []string{"payment.requests", "payment.events", "payment.requests.dlq"} {
		if err := producer.CheckTopics(ctx, []string{k.Addr()}, []string{topic}); err == nil {
			t.Fatalf("%s was created", topic)
		}
	}
	if out := p.logs.String(); strings.Contains(out, `"msg":"schema migration`) == false {
		t.Fatalf("no word of the skipped migration in the log:\n%s", out)
	}
}

// Without topic creation, a missing topic stops payflow at start with an
// error that names it and the flag.
func TestRunWithoutTopicCreationNamesMissingTopics(t *testing.T) {
	k, err := devenv.StartKafka("")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(k.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := producer.EnsureTopics(ctx, []string{k.Addr()}, []producer.Topic{{Name: renamed.Requests, Partitions: 1}}); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	err = app.Run(ctx, app.Config{
		Brokers: []string{k.Addr()}, DatabaseURL: testdb.NewDSN(t), PG: acceptingPG(), HTTPListener: ln,
		WebhookSecrets: stdwebhook.NewSecret(), VaultKey: vault.GenerateKey(),
		Topics: renamed, SkipTopicCreation: true, RetryBudget: time.Minute, Lease: 2 * time.Minute,
	})
	if err == nil || !strings.Contains(err.Error(), "--create-topics=false") || !strings.Contains(err.Error(), "topic shop.pay.out does not exist") ||
		!strings.Contains(err.Error(), "topic shop.pay.dlq does not exist") {
		t.Fatalf("err = %v", err)
	}
}
