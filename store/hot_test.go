package store_test

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/payflow/payflow/internal/testdb"
	"github.com/payflow/payflow/outbox"
	"github.com/payflow/payflow/payflow"
	"github.com/payflow/payflow/store"
)

// The hot path's update of a bill, its placement recorded, is HOT: no index
// of bills covers or filters on a column it changes, so Postgres writes no
// index entry for it (migration 006).
func TestHotPathBillUpdatesAreHOT(t *testing.T) {
	st := testdb.New(t)
	ctx := context.Background()
	requested(t, st, "c1", "b1")
	// A backend reports its counts when it goes idle, at most once a second.
	var upd, hot int64
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if err := st.Pool.QueryRow(ctx, `SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables WHERE relname = 'bills'`).Scan(&upd, &hot); err != nil {
			t.Fatal(err)
		}
		if upd >= 1 || time.Now().After(deadline) {
			break
		}
	}
	if upd != 1 || hot != 1 {
		t.Fatalf("bills: %d updates, %d of them HOT; want 1, HOT", upd, hot)
	}
}

// A bill has settled_at exactly when it is final: a decline, and a
// KakaoTalk bill refused at placement, set it; a bill placed or given up on
// (abandoned) keeps none, so reconciliation, which reads only the bills
// without it, finds them.
func TestSettledAtMarksTheFinalBills(t *testing.T) {
	st := testdb.New(t)
	ctx := context.Background()
	m, err := st.AddMethod(ctx, payflow.PaymentMethod{ID: uuid.NewString(), MemberID: "mem", Label: "card", BillingKeyEnc: []byte("sealed")})
	if err != nil {
		t.Fatal(err)
	}
	auto := newCharge("c-auto", "b-auto", "w1")
	auto.Bill.Method, auto.Bill.MethodID, auto.Bill.FallbackReason = payflow.MethodAutoPay, m.ID, ""
	pk, _, err := st.CreateCharge(ctx, auto)
	if err != nil {
		t.Fatal(err)
	}
	next := payflow.Bill{BillID: "b-next", Method: payflow.MethodKakaoBill, FallbackReason: payflow.FallbackMethodExpired, Amount: 700}
	if err := st.Decline(ctx, pk, payflow.Bill{BillID: "b-auto", MethodID: m.ID}, payflow.DeclineExpired, payflow.MethodExpired, next, "w1", time.Minute); err != nil {
		t.Fatal(err)
	}
	finish := func(charge, bill string, cs payflow.ChargeState, bs payflow.BillStatus) {
		t.Helper()
		pk, _, err := st.CreateCharge(ctx, newCharge(charge, bill, "w1"))
		if err != nil {
			t.Fatal(err)
		}
		if err := st.FinishPlacing(ctx, payflow.PlaceResult{ChargePK: pk, BillID: bill, Owner: "w1", ChargeState: cs, BillStatus: bs,
			FailureReason: "x", Attempts: 1}, []outbox.Message{resultMsg(charge)}); err != nil {
			t.Fatal(err)
		}
	}
	finish("c-refused", "b-refused", payflow.StatePlaceFailed, payflow.BillDeclined)
	finish("c-placed", "b-placed", payflow.StateRequested, payflow.BillRequested)
	finish("c-abandoned", "b-abandoned", payflow.StatePlaceFailed, payflow.BillAbandoned)
	rows, err := st.Pool.Query(ctx, `SELECT bill_id || ' ' || status || ' ' || (settled_at IS NOT NULL) FROM bills ORDER BY bill_id`)
	if err != nil {
		t.Fatal(err)
	}
	got, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	want := "[b-abandoned abandoned false b-auto declined true b-next pending false b-placed requested false b-refused declined true]"
	if fmt.Sprint(got) != want {
		t.Fatalf("bills %v\nwant    %s", got, want)
	}
	aw, err := st.AwaitingSettlement(ctx, -time.Hour, 10)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, a := range aw {
		ids = append(ids, a.BillID)
	}
	sort.Strings(ids)
	if fmt.Sprint(ids) != "[b-abandoned b-placed]" {
		t.Fatalf("awaiting settlement %v, want the placed and the abandoned bill", ids)
	}
}

// requested stores charge with its bill placed (requested) and returns the
// charge's pk.
func requested(t *testing.T, st *store.Store, charge, bill string) int64 {
	t.Helper()
	ctx := context.Background()
	pk, _, err := st.CreateCharge(ctx, newCharge(charge, bill, "w1"))
	if err != nil {
		t.Fatal(err)
	}
	if err := st.FinishPlacing(ctx, payflow.PlaceResult{ChargePK: pk, BillID: bill, Owner: "w1", ChargeState: payflow.StateRequested,
		BillStatus: payflow.BillRequested, PGTxID: "T-" + bill, Attempts: 1}, []outbox.Message{resultMsg(charge)}); err != nil {
		t.Fatal(err)
	}
	return pk
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
