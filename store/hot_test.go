package store_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/payflow/payflow/internal/testdb"
	"github.com/payflow/payflow/outbox"
	"github.com/payflow/payflow/payflow"
	"github.com/payflow/payflow/store"
)

// The hot path's updates of a bill (a decline, a placement recorded) are
// HOT: no index of bills covers or filters on a column they change, so
// Postgres writes no index entry for them (migration 006).
func TestHotPathBillUpdatesAreHOT(t *testing.T) {
	st := testdb.New(t)
	ctx := context.Background()
	m, err := st.AddMethod(ctx, payflow.PaymentMethod{ID: uuid.NewString(), MemberID: "mem", Label: "card", BillingKeyEnc: []byte("sealed")})
	if err != nil {
		t.Fatal(err)
	}
	c := newCharge("c1", "b-auto", "w1")
	c.Bill.Method, c.Bill.MethodID, c.Bill.FallbackReason = payflow.MethodAutoPay, m.ID, ""
	pk, _, err := st.CreateCharge(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	next := payflow.Bill{BillID: "b-kakao", Method: payflow.MethodKakaoBill, FallbackReason: payflow.FallbackMethodExpired, Amount: 700}
	if err := st.Decline(ctx, pk, payflow.Bill{BillID: "b-auto", MethodID: m.ID}, payflow.DeclineExpired, payflow.MethodExpired, next, "w1", time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := st.FinishPlacing(ctx, payflow.PlaceResult{ChargePK: pk, BillID: "b-kakao", Owner: "w1", ChargeState: payflow.StateRequested,
		BillStatus: payflow.BillRequested, PGTxID: "T-1", Attempts: 1}, []outbox.Message{resultMsg("c1")}); err != nil {
		t.Fatal(err)
	}
	// A backend reports its counts when it goes idle, at most once a second.
	var upd, hot int64
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if err := st.Pool.QueryRow(ctx, `SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables WHERE relname = 'bills'`).Scan(&upd, &hot); err != nil {
			t.Fatal(err)
		}
		if upd >= 2 || time.Now().After(deadline) {
			break
		}
	}
	if upd != 2 || hot != upd {
		t.Fatalf("bills: %d updates, %d of them HOT; want 2, all HOT", upd, hot)
	}
}

// Reconciliation's and the callbacks' lookups are served by the indexes
// that replaced the ones on status and pg_tx_id: with sequential scans
// off, each plan names its index (a query that no longer matches its
// partial index would scan the table).
func TestLookupsUseTheirIndexes(t *testing.T) {
	st := testdb.New(t)
	ctx := context.Background()
	conn, err := st.Pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, `SET enable_seqscan = off`); err != nil {
		t.Fatal(err)
	}
	defer conn.Exec(ctx, `RESET enable_seqscan`)
	for _, q := range []struct {
		name, sql, index string
		args             []any
	}{
		{"awaiting settlement", store.AwaitingSQL, "bills_unsettled", []any{time.Minute, 10, store.AbandonedWatch, nil}},
		{"bills with prefix", store.BillsWithPrefixSQL, "bills_id_c", []any{"0190a000-0000-7abc-8def-0123456"}},
	} {
		rows, err := conn.Query(ctx, "EXPLAIN "+q.sql, q.args...)
		if err != nil {
			t.Fatalf("%s: %v", q.name, err)
		}
		var plan strings.Builder
		for rows.Next() {
			var line string
			if err := rows.Scan(&line); err != nil {
				t.Fatal(err)
			}
			plan.WriteString(line + "\n")
		}
		if err := rows.Err(); err != nil {
			t.Fatalf("%s: %v", q.name, err)
		}
		if !strings.Contains(plan.String(), q.index) {
			t.Errorf("%s does not use %s:\n%s", q.name, q.index, plan.String())
		}
	}
}
