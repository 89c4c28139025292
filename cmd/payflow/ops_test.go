package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/segmentio/kafka-go"

	"github.com/payflow/payflow/consumer"
	"github.com/payflow/payflow/devenv"
	"github.com/payflow/payflow/events"
	"github.com/payflow/payflow/internal/testdb"
	"github.com/payflow/payflow/kafkaconf"
	"github.com/payflow/payflow/payflow"
	"github.com/payflow/payflow/producer"
	"github.com/payflow/payflow/vault"
)

func TestRotateVaultKey(t *testing.T) {
	st := testdb.New(t)
	dsn := st.Pool.Config().ConnString()
	ctx := context.Background()
	oldKey, newKey := vault.GenerateKey(), vault.GenerateKey()
	// Key ids are one byte; two random keys share one 1 time in 256, which
	// the vault refuses.
	for _, err := vault.NewWithOld(newKey, oldKey); err != nil; _, err = vault.NewWithOld(newKey, oldKey) {
		newKey = vault.GenerateKey()
	}
	old, _ := vault.New(oldKey)
	id := uuid.NewString()
	sealed, _ := old.Seal([]byte("bk_rotate_me"), []byte(id))
	if _, err := st.AddMethod(ctx, payflow.PaymentMethod{ID: id, MemberID: "m", Label: "card", BillingKeyEnc: sealed}); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PAYFLOW_VAULT_KEY", newKey+" "+oldKey)
	cmd := rotateVaultKeyCmd()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetArgs([]string{"--database-url", dsn})
	if err := cmd.ExecuteContext(ctx); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "re-sealed 1") {
		t.Fatalf("output: %s", out.String())
	}
	m, _ := st.MethodByID(ctx, id)
	current, _ := vault.New(newKey) // the old key is gone now
	if key, err := current.Open(m.BillingKeyEnc, []byte(id)); err != nil || string(key) != "bk_rotate_me" {
		t.Fatalf("after rotation the new key alone opens %q, %v", key, err)
	}
}

func TestDLQReplayRepublishesOnce(t *testing.T) {
	k, err := devenv.StartKafka("")
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	brokers := []string{k.Addr()}
	if err := producer.EnsureTopics(ctx, brokers, producer.Topics(1)); err != nil {
		t.Fatal(err)
	}
	w := producer.NewWriter(brokers)
	defer w.Close()
	orig := kafka.Message{Topic: events.TopicRequests, Partition: 0, Offset: 9, Key: []byte("c1"), Value: []byte(`{"fixed":"later"}`),
		Headers: []kafka.Header{{Key: "content-type", Value: []byte(events.ContentType)}}}
	if err := w.DeadLetter(ctx, orig, context.Canceled); err != nil {
		t.Fatal(err)
	}
	printf := func(string, ...any) {}
	if err := replayDLQ(ctx, brokers, nil, kafkaconf.Topics{}, 10, false, printf); err != nil {
		t.Fatal(err)
	}
	if err := replayDLQ(ctx, brokers, nil, kafkaconf.Topics{}, 10, false, printf); err != nil {
		t.Fatal(err)
	}
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: brokers, Topic: events.TopicRequests, Partition: 0, MaxWait: 100 * time.Millisecond})
	defer r.Close()
	m, err := r.ReadMessage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	h := map[string]string{}
	for _, x := range m.Headers {
		h[x.Key] = string(x.Value)
	}
	if string(m.Value) != string(orig.Value) || string(m.Key) != "c1" || h["dlq-error"] != "" || h["content-type"] != events.ContentType ||
		!strings.HasPrefix(h["dlq-replayed-from"], events.TopicDLQ+"/0/") {
		t.Fatalf("replayed %q %q %v", m.Key, m.Value, h)
	}
	// The second run found nothing new: one message only.
	short, cancel2 := context.WithTimeout(ctx, 2*time.Second)
	defer cancel2()
	if extra, err := r.ReadMessage(short); err == nil {
		t.Fatalf("replayed twice: %q", extra.Value)
	}
}

// A stub dead letter holds no value: replaying it would publish an empty
// request and bury where the original is. Replay names the original's
// place instead and leaves the stub alone.
func TestDLQReplaySkipsStubs(t *testing.T) {
	k, err := devenv.StartKafka("")
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	brokers := []string{k.Addr()}
	if err := producer.EnsureTopics(ctx, brokers, producer.Topics(1)); err != nil {
		t.Fatal(err)
	}
	w := producer.NewWriter(brokers)
	defer w.Close()
	orig := kafka.Message{Topic: events.TopicRequests, Partition: 0, Offset: 9, Key: []byte("c1"), Value: []byte(`{"too":"large"}`)}
	if err := w.DeadLetter(ctx, consumer.Stub(orig), errors.New("unparseable event: not JSON")); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	printf := func(format string, a ...any) { fmt.Fprintf(&out, format, a...) }
	if err := replayDLQ(ctx, brokers, nil, kafkaconf.Topics{}, 10, false, printf); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "payment.requests/0/9") || !strings.Contains(out.String(), "not replayed") {
		t.Fatalf("replay output does not point at the original:\n%s", out.String())
	}
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: brokers, Topic: events.TopicRequests, Partition: 0, MaxWait: 100 * time.Millisecond})
	defer r.Close()
	short, cancel2 := context.WithTimeout(ctx, 2*time.Second)
	defer cancel2()
	if m, err := r.ReadMessage(short); err == nil {
		t.Fatalf("replayed a stub: key %q value %q", m.Key, m.Value)
	}
}
