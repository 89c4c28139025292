package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/spf13/cobra"

	"github.com/payflow/payflow/checker"
	"github.com/payflow/payflow/kafkaconf"
)

func checkCmd() *cobra.Command {
	var (
		kf       kafkaFlags
		dsn      string
		pgURL    string
		requests bool
	)
	cmd := &cobra.Command{
		Use:   "check",
		Short: "Verify the money invariants from the database, the PG simulator's ledger and the result topic",
		RunE: func(cmd *cobra.Command, _ []string) error {
			fromEnv(cmd.Flags(), "database-url", "DATABASE_URL", &dsn)
			sec, topics, err := kf.settings()
			if err != nil {
				return err
			}
			if kf.brokers == "" || dsn == "" || pgURL == "" {
				return usagef("check needs PAYFLOW_KAFKA_BROKERS, DATABASE_URL and PAYFLOW_PG_URL (the simulator)")
			}
			dial, err := sec.Dial()
			if err != nil {
				return usagef("%v", err)
			}
			defer dial.Close()
			rep, err := runCheck(cmd.Context(), kafkaSource{brokers: splitList(kf.brokers), dial: dial, topics: topics}, dsn, pgURL, requests)
			if err != nil {
				return err
			}
			printCheck(cmd.OutOrStdout(), rep)
			if !rep.OK() {
				return fmt.Errorf("check: %d violations", len(rep.Violations))
			}
			return nil
		},
	}
	fl := cmd.Flags()
	addKafkaFlags(fl, &kf)
	fl.StringVar(&dsn, "database-url", "", "Postgres connection string (default $DATABASE_URL)")
	fl.StringVar(&pgURL, "pg-url", os.Getenv("PAYFLOW_PG_URL"), "the PG simulator's base URL (its /sim/ledger is read)")
	fl.BoolVar(&requests, "requests", false, "also read the request topic and check that every request has its one result "+
		"and moved no money twice (run it once every request has been handled)")
	return cmd
}

// kafkaSource is where check reads the topics: the brokers, with serve's
// TLS and SASL settings, and the configured topic names.
type kafkaSource struct {
	brokers []string
	dial    *kafkaconf.Dial
	topics  kafkaconf.Topics
}

func runCheck(ctx context.Context, k kafkaSource, dsn, pgURL string, requests bool) (checker.Report, error) {
	topics := k.topics.WithDefaults()
	// One connection first, so a broker that refuses the credentials or
	// the certificate is named as such, before anything is read.
	if err := k.dial.Check(ctx, k.brokers); err != nil {
		return checker.Report{}, err
	}
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		return checker.Report{}, err
	}
	defer pool.Close()
	ledger, err := readLedger(ctx, pgURL)
	if err != nil {
		return checker.Report{}, err
	}
	published, err := checker.ReadTopicWith(ctx, k.dial.Dialer(), k.brokers, topics.Events)
	if err != nil {
		return checker.Report{}, kafkaconf.BrokerError(k.brokers[0], err)
	}
	rep, err := checker.Check(ctx, pool, ledger, published)
	if err != nil || !requests {
		return rep, err
	}
	msgs, err := checker.ReadTopicWith(ctx, k.dial.Dialer(), k.brokers, topics.Requests)
	if err != nil {
		return rep, kafkaconf.BrokerError(k.brokers[0], err)
	}
	rr := checker.CheckRequests(checker.ParseRequests(msgs), ledger, published)
	rep.Violations = append(rep.Violations, rr.Violations...)
	return rep, nil
}

func readLedger(ctx context.Context, pgURL string) ([]checker.LedgerEntry, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, pgURL+"/sim/ledger", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("check: read the PG ledger: %w", err)
	}
	defer resp.Body.Close()
	var out []checker.LedgerEntry
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return nil, fmt.Errorf("check: decode the PG ledger: %w", err)
	}
	return out, nil
}

func printCheck(out io.Writer, r checker.Report) {
	fmt.Fprintf(out, "invariants        %d charges, %d bills, %d outbox rows, %d events published: %d violations\n",
		r.Charges, r.Bills, r.Outbox, r.Published, len(r.Violations))
	for _, v := range r.Violations {
		fmt.Fprintln(out, "  violation:", v)
	}
}
