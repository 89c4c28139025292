// Package checker verifies payflow's money invariants from the outside,
// after a run: it reads the database, the PG's ledger of executed operations
// and the whole result topic, and reports every violation of
//
//   - every accepted charge has exactly one placement result
//     (charge.processed or charge.failed) and none is left placing;
//   - no bill was charged at the PG more than once, and no charge has two
//     bills accepted for one placement;
//   - no bill's refunds exceed what was paid, here or at the PG;
//   - every outbox row was published;
//   - every published event is held by the database (no result the database
//     does not hold) and every outbox row is on the topic;
//   - every bill the PG settled is settled here with the same status, with
//     one payment.settled event at most;
//   - no open bill (pending, requested, abandoned) is marked settled,
//     which would hide it from reconciliation.
//
// CheckRequests adds the invariants of the requests themselves, given what
// was published to payment.requests: every cancel, refund and re-payment
// has its one result, a re-sent request moves no money twice, and per
// charge the PG never holds more of the customer's money than its largest
// bill, nor refunds more than it took.
//
// `payflow check`, the chaos tests and `payflow bench` run it.
package checker

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/segmentio/kafka-go"

	"github.com/payflow/payflow/events"
	"github.com/payflow/payflow/payflow"
)

// LedgerEntry is one operation the PG executed (pgsim.Entry's shape).
type LedgerEntry struct {
	Op       string `json:"op"`
	BillID   string `json:"bill_id"`
	RefundID string `json:"refund_id"`
	Amount   int64  `json:"amount"`
	Outcome  string `json:"outcome"`
}

// Report is the outcome of a check.
type Report struct {
	Charges, Bills, Published, Outbox int
	Violations                        []string
}

// OK reports whether no invariant was violated.
func (r Report) OK() bool { return len(r.Violations) == 0 }

func (r *Report) violate(format string, a ...any) {
	if len(r.Violations) < 100 {
		r.Violations = append(r.Violations, fmt.Sprintf(format, a...))
	}
}

// ReadTopic reads every message of a topic from the beginning to its current
// end, across all partitions, over a plaintext connection.
func ReadTopic(ctx context.Context, brokers []string, topic string) ([]kafka.Message, error) {
	return ReadTopicWith(ctx, kafka.DefaultDialer, brokers, topic)
}

// ReadTopicWith is ReadTopic through dialer, which carries the connection's
// TLS and SASL (kafkaconf.Dial.Dialer).
func ReadTopicWith(ctx context.Context, dialer *kafka.Dialer, brokers []string, topic string) ([]kafka.Message, error) {
	if len(brokers) == 0 {
		return nil, fmt.Errorf("checker: no brokers")
	}
	conn, err := dialer.DialContext(ctx, "tcp", brokers[0])
	if err != nil {
		return nil, err
	}
	parts, err := conn.ReadPartitions(topic)
	conn.Close()
	if err != nil {
		return nil, err
	}
	var out []kafka.Message
	for _, p := range parts {
		pc, err := dialer.DialLeader(ctx, "tcp", brokers[0], topic, p.ID)
		if err != nil {
			return nil, err
		}
		last, err := pc.ReadLastOffset()
		pc.Close()
		if err != nil {
			return nil, err
		}
		if last == 0 {
			continue
		}
		r := kafka.NewReader(kafka.ReaderConfig{Brokers: brokers, Dialer: dialer, Topic: topic, Partition: p.ID, MaxWait: 100 * time.Millisecond})
		for {
			rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			m, err := r.ReadMessage(rctx)
			cancel()
			if err != nil {
				r.Close()
				return nil, fmt.Errorf("checker: read %s/%d: %w", topic, p.ID, err)
			}
			out = append(out, m)
			if m.Offset+1 >= last {
				break
			}
		}
		r.Close()
	}
	return out, nil
}

type event struct {
	ID   string `json:"id"`
	Type string `json:"type"`
	Data struct {
		MerchantID string `json:"merchant_id"`
		ChargeID   string `json:"charge_id"`
		BillID     string `json:"bill_id"`
		RepayID    string `json:"repay_id"`
	} `json:"data"`
}

// Check verifies the invariants. published is the result topic's content.
func Check(ctx context.Context, db *pgxpool.Pool, ledger []LedgerEntry, published []kafka.Message) (Report, error) {
	var r Report
	// Events on the topic, deduplicated by id (at least once is allowed).
	onTopic := map[string]event{}
	for _, m := range published {
		var e event
		if err := json.Unmarshal(m.Value, &e); err != nil {
			r.violate("unparseable event on the result topic at %d/%d", m.Partition, m.Offset)
			continue
		}
		onTopic[e.ID] = e
	}
	r.Published = len(onTopic)

	// Outbox: all published, all on the topic, and the topic holds nothing else.
	rows, err := db.Query(ctx, `SELECT event_id::text, published_at IS NOT NULL FROM outbox`)
	if err != nil {
		return r, err
	}
	inOutbox := map[string]bool{}
	for rows.Next() {
		var id string
		var published bool
		if err := rows.Scan(&id, &published); err != nil {
			rows.Close()
			return r, err
		}
		inOutbox[id] = true
		if !published {
			r.violate("outbox row %s was never published", id)
		} else if _, ok := onTopic[id]; !ok {
			r.violate("outbox row %s is marked published but is not on the topic", id)
		}
	}
	rows.Close()
	r.Outbox = len(inOutbox)
	for id, e := range onTopic {
		if !inOutbox[id] {
			r.violate("event %s (%s, charge %s) was published but the database does not hold it", id, e.Type, e.Data.ChargeID)
		}
	}

	// Placement results per charge; settlements per bill.
	results := map[[2]string]int{}
	settledEvents := map[string]int{}
	for _, e := range onTopic {
		switch e.Type {
		case events.TypeChargeProcessed, events.TypeChargeFailed:
			if e.Data.RepayID == "" { // a re-payment's bill that could not be placed is the re-payment's result
				results[[2]string{e.Data.MerchantID, e.Data.ChargeID}]++
			}
		case events.TypeSettled:
			settledEvents[e.Data.BillID]++
		}
	}
	for bill, n := range settledEvents {
		if n > 1 {
			r.violate("bill %s has %d payment.settled events", bill, n)
		}
	}
	rows, err = db.Query(ctx, `SELECT merchant_id, charge_id, state FROM charges`)
	if err != nil {
		return r, err
	}
	for rows.Next() {
		var m, c, state string
		if err := rows.Scan(&m, &c, &state); err != nil {
			rows.Close()
			return r, err
		}
		r.Charges++
		if state == "placing" {
			r.violate("charge %s/%s is still placing", m, c)
		}
		if n := results[[2]string{m, c}]; n != 1 {
			r.violate("charge %s/%s has %d placement results, want 1", m, c, n)
		}
	}
	rows.Close()

	// The PG's side: each bill accepted at most once; per charge, one
	// accepted bill per placement (the first bill, or a re-payment's).
	accepted := map[string]int{}
	refunded := map[string]int64{}
	for _, e := range ledger {
		switch {
		case (e.Op == "auto_pay" || e.Op == "kakao_bill") && e.Outcome == "accepted":
			accepted[e.BillID]++
		case e.Op == "refund" && e.Outcome == "refunded":
			refunded[e.BillID] += e.Amount
		}
	}
	for bill, n := range accepted {
		if n > 1 {
			r.violate("bill %s was charged %d times at the PG", bill, n)
		}
	}
	rows, err = db.Query(ctx, `SELECT c.merchant_id, c.charge_id, b.bill_id, b.repay_pk IS NOT NULL, b.amount, b.paid_amount, b.refunded_amount,
			b.status, b.settled_at IS NOT NULL
		FROM bills b JOIN charges c ON c.id = b.charge_pk`)
	if err != nil {
		return r, err
	}
	perPlacement := map[string]int{}
	for rows.Next() {
		var m, c, bill, status string
		var repay, settled bool
		var amount, paid, ref int64
		if err := rows.Scan(&m, &c, &bill, &repay, &amount, &paid, &ref, &status, &settled); err != nil {
			rows.Close()
			return r, err
		}
		r.Bills++
		if accepted[bill] > 0 {
			key := m + "/" + c
			if repay {
				key += "/repay/" + bill
			}
			perPlacement[key]++
		}
		if ref > paid {
			r.violate("bill %s refunded %d of %d paid", bill, ref, paid)
		}
		if bs := payflow.BillStatus(status); settled && (bs == payflow.BillPending || bs.Settleable()) {
			r.violate("bill %s is %s, yet marked settled: reconciliation would not look it up", bill, status)
		}
		if refunded[bill] > amount {
			r.violate("bill %s refunded %d at the PG, more than its %d", bill, refunded[bill], amount)
		}
	}
	rows.Close()
	for key, n := range perPlacement {
		if n > 1 {
			r.violate("charge %s has %d bills accepted at the PG for one placement", key, n)
		}
	}
	// Bills the PG settled (a customer paid, a bill was destroyed or
	// expired) are settled here alike: by webhook or by reconciliation.
	for _, e := range ledger {
		if e.Op != "settle" {
			continue
		}
		var status string
		err := db.QueryRow(ctx, `SELECT status FROM bills WHERE bill_id = $1`, e.BillID).Scan(&status)
		switch {
		case err != nil:
			r.violate("the PG settled bill %s (%s), which the database does not know", e.BillID, e.Outcome)
		case status != e.Outcome:
			r.violate("the PG settled bill %s as %s; the database has it %s", e.BillID, e.Outcome, status)
		case settledEvents[e.BillID] == 0 && e.Outcome != "cancelled":
			r.violate("bill %s was settled %s without a payment.settled event", e.BillID, e.Outcome)
		}
	}
	for bill := range accepted {
		var known bool
		if err := db.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM bills WHERE bill_id = $1)`, bill).Scan(&known); err != nil {
			return r, err
		}
		if !known {
			r.violate("the PG accepted bill %s, which the database does not know", bill)
		}
	}
	return r, nil
}
