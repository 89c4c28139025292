package store_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/payflow/payflow/internal/testdb"
	"github.com/payflow/payflow/payflow"
	"github.com/payflow/payflow/pgclient/payssam"
	"github.com/payflow/payflow/store"
)

// atVersion gives a new database migrated up to version, the schema of an
// earlier release, and a store open on it.
func atVersion(t *testing.T, version int32) (string, *store.Store) {
	t.Helper()
	ctx := context.Background()
	dsn := testdb.NewDSN(t)
	if err := store.MigrateTo(ctx, dsn, version); err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	return dsn, st
}

// A refund in flight when payflow is upgraded keeps the idempotency key it
// was sent to the PG with: sent again under a new key, the PG would refund
// it twice. New refunds are named by their row.
func TestUpgradeKeepsThePGRefundIDOfRefundsInFlight(t *testing.T) {
	ctx := context.Background()
	dsn, st := atVersion(t, 1)
	// The previous release's data: a paid bill with a merchant refund and
	// a re-payment's refund step in flight.
	if _, err := st.Pool.Exec(ctx, `
INSERT INTO charges (merchant_id, charge_id, request_hash, request_event_id, amount, order_name, phone, customer_name, state, current_bill_id,
		lease_owner, lease_until)
	VALUES ('m1', 'c1', 'h', 'e', 10000, 'o', '+821012345678', 'K', 'paid', 'b1', 'test', now() + interval '1 hour');
INSERT INTO bills (bill_id, charge_pk, method, amount, status, paid_amount, refund_reserved) VALUES ('b1', 1, 'kakao_bill', 10000, 'paid', 10000, 10000);
INSERT INTO repays (merchant_id, repay_id, charge_pk, old_bill_id, amount, request_hash, step) VALUES ('m1', 'p1', 1, 'b1', 10000, 'h', 'refunding');
INSERT INTO refunds (merchant_id, refund_id, kind, charge_pk, bill_id, amount, request_hash, status, lease_owner, lease_until)
	VALUES ('m1', 'r1', 'refund', 1, 'b1', 3000, 'h', 'pending', 'old', now()),
	       ('m1', 'repay:p1', 'repay', 1, 'b1', 7000, 'h', 'pending', 'old', now())`); err != nil {
		t.Fatal(err)
	}
	if err := store.Migrate(ctx, dsn); err != nil {
		t.Fatal(err)
	}
	r1, err := st.RefundByKey(ctx, "m1", "r1")
	if err != nil || r1.PGRefundID != "m1/r1" {
		t.Fatalf("merchant refund: PG id %q, %v; want m1/r1 as it was sent", r1.PGRefundID, err)
	}
	rp, err := st.RepayByKey(ctx, "m1", "p1")
	if err != nil || rp.RefundPK == 0 {
		t.Fatalf("re-payment %+v, %v: its refund step is not found after the upgrade", rp, err)
	}
	step, err := st.RefundByPK(ctx, rp.RefundPK)
	if err != nil || step.PGRefundID != "m1/repay:p1" || step.RefundID != "p1" {
		t.Fatalf("re-payment refund step %+v, %v; want PG id m1/repay:p1 and refund id p1", step, err)
	}
	// A merchant may now use the refund id the old step had.
	if _, created, err := st.CreateRefund(ctx, payflow.NewRefund{MerchantID: "m1", RefundID: "repay:p1", Kind: "refund", ChargePK: 1, BillID: "b1",
		Amount: 1, RequestHash: []byte("h"), Holder: payflow.Holder{Owner: "test"}}); !errors.Is(err, payflow.ErrExceedsPaid) || created {
		t.Fatalf("a refund beyond the paid amount: created %v, %v; want ErrExceedsPaid", created, err)
	}
	// New refunds are named by their row.
	if _, err := st.Pool.Exec(ctx, `UPDATE bills SET refund_reserved = 0 WHERE bill_id = 'b1'`); err != nil {
		t.Fatal(err)
	}
	pk, created, err := st.CreateRefund(ctx, payflow.NewRefund{MerchantID: "m1", RefundID: "r2", Kind: "refund", ChargePK: 1, BillID: "b1",
		Amount: 100, RequestHash: []byte("h"), Holder: payflow.Holder{Owner: "test"}})
	if err != nil || !created {
		t.Fatal(created, err)
	}
	if r2, _ := st.RefundByPK(ctx, pk); r2.PGRefundID != "rf-"+strconv.FormatInt(pk, 10) {
		t.Fatalf("new refund PG id %q", r2.PGRefundID)
	}
}

// A refund whose outcome stays unknown waits its turn: the sweep takes the
// others first instead of the same failing refund every time.
func TestARefundThatKeepsFailingDoesNotStarveTheOthers(t *testing.T) {
	ctx := context.Background()
	st := testdb.New(t)
	if _, err := st.Pool.Exec(ctx, `
INSERT INTO charges (merchant_id, charge_id, request_hash, request_event_id, amount, order_name, phone, customer_name, state, current_bill_id,
		lease_owner, lease_until)
	VALUES ('m1', 'c1', 'h', 'e', 10000, 'o', '+821012345678', 'K', 'paid', 'b1', 'test', now() + interval '1 hour');
INSERT INTO bills (bill_id, charge_pk, method, amount, status, paid_amount) VALUES ('b1', 1, 'kakao_bill', 10000, 'paid', 10000)`); err != nil {
		t.Fatal(err)
	}
	var pks []int64
	for _, id := range []string{"r1", "r2"} {
		pk, _, err := st.CreateRefund(ctx, payflow.NewRefund{MerchantID: "m1", RefundID: id, Kind: "refund", ChargePK: 1, BillID: "b1", Amount: 100, RequestHash: []byte("h"), Holder: payflow.Holder{Owner: "test"}})
		if err != nil {
			t.Fatal(err)
		}
		pks = append(pks, pk)
	}
	// Their worker is gone: its lease is over.
	if err := st.ReleaseCharge(ctx, 1, payflow.Holder{Owner: "test"}); err != nil {
		t.Fatal(err)
	}
	if due, _ := st.ExpiredRefunds(ctx, 1); len(due) != 1 || due[0] != pks[0] {
		t.Fatalf("due %v, want the oldest, %d", due, pks[0])
	}
	if err := st.RetryRefundLater(ctx, pks[0], time.Minute); err != nil {
		t.Fatal(err)
	}
	if due, _ := st.ExpiredRefunds(ctx, 1); len(due) != 1 || due[0] != pks[1] {
		t.Fatalf("due %v after the first failed again, want %d", due, pks[1])
	}
}

// Bills placed before the upgrade are found by the start of their id and
// have no stored PG URL; a URL stored once stays.
func TestUpgradeAddsPGURLsAndFindsBillsByPrefix(t *testing.T) {
	ctx := context.Background()
	dsn, st := atVersion(t, 2)
	if _, err := st.Pool.Exec(ctx, `
INSERT INTO charges (merchant_id, charge_id, request_hash, request_event_id, amount, order_name, phone, customer_name, state, current_bill_id)
	VALUES ('m1', 'c1', 'h', 'e', 10000, 'o', '+821012345678', 'K', 'requested', 'b1');
INSERT INTO bills (bill_id, charge_pk, method, amount, status, pg_tx_id) VALUES
	('b1', 1, 'kakao_bill', 10000, 'requested', 'PS1'),
	('0190a000-0000-7abc-8def-0123456789ab', 1, 'kakao_bill', 10000, 'paid', 'PS2')`); err != nil {
		t.Fatal(err)
	}
	if err := store.Migrate(ctx, dsn); err != nil {
		t.Fatal(err)
	}
	bills, err := st.BillsWithPrefix(ctx, "0190a000-0000-7abc-8def-0123456")
	if err != nil || len(bills) != 1 || bills[0].BillID != "0190a000-0000-7abc-8def-0123456789ab" || bills[0].Amount != 10000 ||
		bills[0].ChargePK != 1 || bills[0].PGTxID != "PS2" || bills[0].Status != payflow.BillPaid {
		t.Fatalf("by prefix: %+v, %v", bills, err)
	}
	if m, err := st.MerchantOf(ctx, "b1"); err != nil || m != "m1" {
		t.Fatalf("merchant of b1: %q, %v", m, err)
	}
	if _, err := st.MerchantOf(ctx, "nope"); err != payflow.ErrNotFound {
		t.Fatalf("merchant of an unknown bill: %v", err)
	}
	if u, _, err := st.PGURL(ctx, "b1"); err != nil || u != "" {
		t.Fatalf("pg url before any was stored: %q, %v", u, err)
	}
	exp := time.Date(2030, 1, 2, 15, 0, 0, 0, time.UTC)
	if err := st.StorePGURL(ctx, "b1", "https://pay.example/1", exp); err != nil {
		t.Fatal(err)
	}
	if err := st.StorePGURL(ctx, "b1", "https://pay.example/2", exp.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if u, e, err := st.PGURL(ctx, "b1"); err != nil || u != "https://pay.example/1" || !e.Equal(exp) {
		t.Fatalf("pg url: %q %v, %v; want the first one stored", u, e, err)
	}
	if err := st.StorePGURL(ctx, "nope", "u", exp); err != payflow.ErrNotFound {
		t.Fatalf("store pg url of an unknown bill: %v", err)
	}
}

// Bills are found by the start of their id whatever their status (a
// pending one too); bills whose id starts otherwise are not.
func TestBillsWithPrefix(t *testing.T) {
	ctx := context.Background()
	st := testdb.New(t)
	if _, err := st.Pool.Exec(ctx, `
INSERT INTO charges (merchant_id, charge_id, request_hash, request_event_id, amount, order_name, phone, customer_name, state, current_bill_id)
	VALUES ('m1', 'c1', 'h', 'e', 10000, 'o', '+821012345678', 'K', 'placing', '0190a000-0000-7abc-8def-0123456789ab');
INSERT INTO bills (bill_id, charge_pk, method, amount, status) VALUES
	('0190a000-0000-7abc-8def-0123456789ab', 1, 'kakao_bill', 10000, 'pending'),
	('0190a000-0000-7abc-8def-0123456fffff', 1, 'kakao_bill', 9000, 'requested'),
	('0190a000-0000-7abc-8def-0123457fffff', 1, 'kakao_bill', 8000, 'requested')`); err != nil {
		t.Fatal(err)
	}
	got, err := st.BillsWithPrefix(ctx, "0190a000-0000-7abc-8def-0123456")
	if err != nil || len(got) != 2 {
		t.Fatalf("with prefix: %+v, %v", got, err)
	}
	found := map[string]payflow.Bill{}
	for _, b := range got {
		found[b.BillID] = b
	}
	if b := found["0190a000-0000-7abc-8def-0123456789ab"]; b.Status != payflow.BillPending || b.Amount != 10000 {
		t.Fatalf("pending bill: %+v", got)
	}
	if b := found["0190a000-0000-7abc-8def-0123456fffff"]; b.Status != payflow.BillRequested || b.Amount != 9000 {
		t.Fatalf("requested bill: %+v", got)
	}
	if got, err := st.BillsWithPrefix(ctx, "0190a000-0000-7abc-8def-0123458"); err != nil || len(got) != 0 {
		t.Fatalf("another prefix: %+v, %v", got, err)
	}
}

// Migration 006 on bills written before it: an open bill wrongly marked
// settled is cleared and reconciled, a declined bill is marked settled, a
// PaySSam bill is found from its PaySSam id, and bills keeps exactly the
// indexes that let the hot path's updates be HOT, all valid.
func TestUpgradeMakesBillsUpdatesHOT(t *testing.T) {
	ctx := context.Background()
	dsn, st := atVersion(t, 5)
	open, declined, pending := "0190a000-0000-7abc-8def-0123456789ab", "0190a000-0001-7abc-8def-0123456789ab", "0190a000-0002-7abc-8def-0123456789ab"
	if _, err := st.Pool.Exec(ctx, `
INSERT INTO charges (merchant_id, charge_id, request_hash, request_event_id, amount, order_name, phone, customer_name, state, current_bill_id)
	VALUES ('m1', 'c1', 'h', 'e', 10000, 'o', '+821012345678', 'K', 'requested', '`+open+`');
INSERT INTO bills (bill_id, charge_pk, method, amount, status, pg_tx_id, settled_at, created_at, updated_at) VALUES
	('`+open+`', 1, 'kakao_bill', 10000, 'requested', '`+payssam.BillID(open)+`', now(), now() - interval '2 hours', now() - interval '2 hours'),
	('`+declined+`', 1, 'auto_pay', 10000, 'declined', NULL, NULL, now() - interval '3 hours', now() - interval '3 hours'),
	('`+pending+`', 1, 'kakao_bill', 10000, 'pending', NULL, now(), now() - interval '4 hours', now() - interval '4 hours')`); err != nil {
		t.Fatal(err)
	}
	if err := store.Migrate(ctx, dsn); err != nil {
		t.Fatal(err)
	}
	aw, err := st.AwaitingSettlement(ctx, time.Hour, 10)
	if err != nil || len(aw) != 1 || aw[0].BillID != open {
		t.Fatalf("awaiting settlement after the upgrade: %+v, %v", aw, err)
	}
	var unsettled int
	if err := st.Pool.QueryRow(ctx, `SELECT count(*) FROM bills WHERE settled_at IS NULL AND bill_id IN ($1, $2)`, open, pending).Scan(&unsettled); err != nil || unsettled != 2 {
		t.Fatalf("open bills without settled_at: %d of 2, %v", unsettled, err)
	}
	var settledLikeUpdated bool
	if err := st.Pool.QueryRow(ctx, `SELECT settled_at = updated_at FROM bills WHERE bill_id = $1`, declined).Scan(&settledLikeUpdated); err != nil || !settledLikeUpdated {
		t.Fatalf("declined bill's settled_at: %v, %v", settledLikeUpdated, err)
	}
	prefix, ok := payssam.UUIDPrefix(payssam.BillID(open))
	if !ok {
		t.Fatal("no prefix")
	}
	bills, err := st.BillsWithPrefix(ctx, prefix)
	if err != nil || len(bills) != 1 || bills[0].BillID != open || bills[0].PGTxID != payssam.BillID(open) {
		t.Fatalf("by PaySSam id: %+v, %v", bills, err)
	}
	rows, err := st.Pool.Query(ctx, `SELECT c.relname || ' ' || i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
		WHERE i.indrelid = 'bills'::regclass ORDER BY c.relname`)
	if err != nil {
		t.Fatal(err)
	}
	idx, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(idx); got != "[bills_charge true bills_id_c true bills_pkey true bills_unsettled true]" {
		t.Fatalf("indexes of bills: %s", got)
	}
}

// Instances that start together all migrate: the index builds of
// migration 006 (CREATE INDEX CONCURRENTLY) wait for every older snapshot,
// so an instance waiting for the migration lock must not hold one.
func TestConcurrentMigrationsAllSucceed(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dsn, st := atVersion(t, 5)
	if _, err := st.Pool.Exec(ctx, `
INSERT INTO charges (merchant_id, charge_id, request_hash, request_event_id, amount, order_name, phone, customer_name, state)
	VALUES ('m1', 'c1', 'h', 'e', 10000, 'o', '+821012345678', 'K', 'requested');
INSERT INTO bills (bill_id, charge_pk, method, amount, status)
	SELECT 'b' || i, 1, 'kakao_bill', 10000, 'requested' FROM generate_series(1, 20000) i`); err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 4)
	for range 4 {
		go func() { errs <- store.Migrate(ctx, dsn) }()
	}
	for range 4 {
		if err := <-errs; err != nil {
			t.Errorf("a concurrent migration failed: %v", err)
		}
	}
}
