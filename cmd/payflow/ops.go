package main

import (
	"context"
	"errors"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/spf13/cobra"

	"github.com/payflow/payflow/kafkaconf"
	"github.com/payflow/payflow/store"
	"github.com/payflow/payflow/vault"
)

// rotateVaultKeyCmd re-seals every stored billing key with the current
// vault key, the middle step of a key rotation (docs/operations.md).
func rotateVaultKeyCmd() *cobra.Command {
	var dsn string
	cmd := &cobra.Command{
		Use:   "rotate-vault-key",
		Short: `Re-seal every billing key with the first key of PAYFLOW_VAULT_KEY ("new old")`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fromEnv(cmd.Flags(), "database-url", "DATABASE_URL", &dsn)
			v, err := vault.ParseKeys(os.Getenv("PAYFLOW_VAULT_KEY"))
			if err != nil {
				return err
			}
			st, err := store.Open(cmd.Context(), dsn)
			if err != nil {
				return err
			}
			defer st.Close()
			n, err := st.ResealMethods(cmd.Context(), func(id string, sealed []byte) ([]byte, bool, error) {
				if v.SealedWithCurrent(sealed) {
					return nil, false, nil
				}
				key, err := v.Open(sealed, []byte(id))
				if err != nil {
					return nil, false, err
				}
				next, err := v.Seal(key, []byte(id))
				return next, err == nil, err
			})
			cmd.Printf("re-sealed %d billing keys with the current key\n", n)
			return err
		},
	}
	cmd.Flags().StringVar(&dsn, "database-url", "", "Postgres connection string (default $DATABASE_URL)")
	return cmd
}

// dlqCmd replays dead-lettered requests.
func dlqCmd() *cobra.Command {
	dlq := &cobra.Command{Use: "dlq", Short: "Inspect and replay payment.requests.dlq"}
	var kf kafkaFlags
	var limit int
	var dryRun bool
	replay := &cobra.Command{
		Use:   "replay",
		Short: "Publish dead-lettered messages back to payment.requests (after the cause was fixed)",
		Long: `Reads payment.requests.dlq with the consumer group payflow-dlq-replay, so each
message is replayed once however often the command runs, and publishes it
unchanged (same key and value, original headers) to payment.requests, with a
dlq-replayed-from header. A message that still cannot be parsed simply comes
back to the dead-letter topic. A stub (dlq-value-dropped: the dead-letter topic
did not take the message whole) is not replayed; its source topic, partition
and offset are printed. --dry-run lists what would be replayed.`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if kf.brokers == "" {
				return usagef("dlq replay needs PAYFLOW_KAFKA_BROKERS or --brokers")
			}
			sec, topics, err := kf.settings()
			if err != nil {
				return err
			}
			dial, err := sec.Dial()
			if err != nil {
				return err
			}
			defer dial.Close()
			return replayDLQ(cmd.Context(), splitList(kf.brokers), dial, topics, limit, dryRun, func(format string, a ...any) { cmd.Printf(format, a...) })
		},
	}
	addKafkaFlags(replay.Flags(), &kf)
	replay.Flags().IntVar(&limit, "limit", 1000, "replay at most this many messages")
	replay.Flags().BoolVar(&dryRun, "dry-run", false, "list the messages without replaying or committing")
	dlq.AddCommand(replay)
	return dlq
}

func replayDLQ(ctx context.Context, brokers []string, dial *kafkaconf.Dial, topics kafkaconf.Topics, limit int, dryRun bool, printf func(string, ...any)) error {
	topics = topics.WithDefaults()
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: brokers, Dialer: dial.Dialer(), GroupID: "payflow-dlq-replay", Topic: topics.DLQ,
		MaxWait: 200 * time.Millisecond, StartOffset: kafka.FirstOffset})
	defer r.Close()
	w := &kafka.Writer{Addr: kafka.TCP(brokers...), Transport: dial.Transport(), Topic: topics.Requests, Balancer: &kafka.Hash{},
		RequiredAcks: kafka.RequireAll, BatchTimeout: 2 * time.Millisecond}
	defer w.Close()
	n, skipped := 0, 0
	for n < limit {
		fctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		m, err := r.FetchMessage(fctx)
		cancel()
		if err != nil {
			if ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) {
				break // nothing more waiting
			}
			return err
		}
		var headers []kafka.Header
		dlqh := map[string]string{}
		for _, h := range m.Headers {
			if strings.HasPrefix(h.Key, "dlq-") {
				dlqh[h.Key] = string(h.Value)
			} else {
				headers = append(headers, h)
			}
		}
		reason, dropped := dlqh["dlq-error"], dlqh["dlq-value-dropped"]
		printf("%s/%d key=%q: %s\n", m.Topic, m.Offset, m.Key, reason)
		if dropped != "" {
			// A stub: the dead-letter topic did not take the message, so
			// it holds no value. Replaying it would publish an empty
			// request and bury where the original is.
			printf("  stub without its %s-byte value, not replayed: the original is at %s/%s/%s\n",
				dropped, dlqh["dlq-source-topic"], dlqh["dlq-source-partition"], dlqh["dlq-source-offset"])
			skipped++
			if !dryRun {
				if err := r.CommitMessages(ctx, m); err != nil {
					return err
				}
			}
			n++
			continue
		}
		if !dryRun {
			headers = append(headers, kafka.Header{Key: "dlq-replayed-from", Value: []byte(topics.DLQ + "/" + strconv.Itoa(m.Partition) + "/" + strconv.FormatInt(m.Offset, 10))})
			if err := w.WriteMessages(ctx, kafka.Message{Key: m.Key, Value: m.Value, Headers: headers}); err != nil {
				return err
			}
			if err := r.CommitMessages(ctx, m); err != nil {
				return err
			}
		}
		n++
	}
	verb := "replayed"
	if dryRun {
		verb = "would replay"
	}
	printf("%s %d messages\n", verb, n-skipped)
	if skipped > 0 {
		printf("%d stubs not replayed: republish their originals from the source topic\n", skipped)
	}
	return nil
}
