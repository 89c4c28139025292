package store_test

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/payflow/payflow/internal/testdb"
	"github.com/payflow/payflow/internal/testnet"
	"github.com/payflow/payflow/outbox"
	"github.com/payflow/payflow/payflow"
	"github.com/payflow/payflow/store"
)

// flushLog records the group commit's flushes.
type flushLog struct {
	mu    sync.Mutex
	sizes map[string][]int
}

func (l *flushLog) Flushed(kind string, n int, _ time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.sizes[kind] = append(l.sizes[kind], n)
}

// largest is the most items one flush of kind carried, and how many items
// its flushes carried in all.
func (l *flushLog) largest(kind string) (largest, total int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, n := range l.sizes[kind] {
		largest, total = max(largest, n), total+n
	}
	return largest, total
}

func openGrouped(t *testing.T, gc store.GroupCommit) *store.Store {
	t.Helper()
	dsn := testdb.NewDSN(t)
	ctx := context.Background()
	if err := store.Migrate(ctx, dsn); err != nil {
		t.Fatal(err)
	}
	st, err := store.OpenWith(ctx, dsn, store.Options{GroupCommit: gc})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	return st
}

func newCharge(id, billID, owner string) payflow.NewCharge {
	req := payflow.ChargeRequest{MerchantID: "m1", ChargeID: id, Amount: 700, Currency: "KRW", OrderName: "o",
		Customer: payflow.Customer{Phone: "+821012345678"}}
	return payflow.NewCharge{Request: req, RequestHash: req.Fingerprint(), RequestEventID: "e-" + id + "-" + billID,
		Bill:       payflow.Bill{BillID: billID, Method: payflow.MethodKakaoBill, FallbackReason: payflow.FallbackNotMember, Amount: 700},
		LeaseOwner: owner, Lease: time.Minute}
}

func resultMsg(chargeID string) outbox.Message {
	return outbox.Message{EventID: uuid.NewString(), Topic: "payment.events", Key: []byte(chargeID), Value: []byte(`{}`)}
}

func count(t *testing.T, st *store.Store, sql string, args ...any) int {
	t.Helper()
	var n int
	if err := st.Pool.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// Many concurrent claims and results through the group commit: every
// charge is created once however many times it is asked for, every result
// under the lease is recorded with its event, and every result under a
// lease that is not held is refused (ErrStale) and writes nothing, while
// the others in its batch commit.
func TestGroupCommitConcurrentClaimsAndResults(t *testing.T) {
	log := &flushLog{sizes: map[string][]int{}}
	st := openGrouped(t, store.GroupCommit{MaxBatch: 16, Observer: log})
	ctx := context.Background()
	const charges, asks = 120, 3

	type claim struct {
		id      string
		pk      int64
		created bool
	}
	claims := make(chan claim, charges*asks)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := 0; i < charges; i++ {
		for a := 0; a < asks; a++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				id := fmt.Sprintf("c%d", i)
				// Each ask decides its own bill: only the created one's
				// bill may exist.
				pk, created, err := st.CreateCharge(ctx, newCharge(id, fmt.Sprintf("b%d-%d", i, a), "w1"))
				if err != nil {
					t.Error(err)
					return
				}
				claims <- claim{id, pk, created}
			}()
		}
	}
	close(start)
	wg.Wait()
	close(claims)
	pks := map[string]int64{}
	for c := range claims {
		if !c.created {
			continue
		}
		if _, twice := pks[c.id]; twice {
			t.Fatalf("charge %s created twice", c.id)
		}
		pks[c.id] = c.pk
	}
	if len(pks) != charges {
		t.Fatalf("%d charges created, want %d", len(pks), charges)
	}
	if n := count(t, st, `SELECT count(*) FROM charges`); n != charges {
		t.Fatalf("%d charge rows, want %d", n, charges)
	}
	if n := count(t, st, `SELECT count(*) FROM bills`); n != charges {
		t.Fatalf("%d bill rows, want %d (one per created charge)", n, charges)
	}
	if n := count(t, st, `SELECT count(*) FROM charges c JOIN bills b ON b.bill_id = c.current_bill_id AND b.charge_pk = c.id`); n != charges {
		t.Fatalf("%d charges with their own current bill, want %d", n, charges)
	}
	if largest, total := log.largest("create_charge"); largest < 2 || total != charges*asks {
		t.Fatalf("claims: largest flush %d, %d items flushed; want batches, and all %d", largest, total, charges*asks)
	}

	// Results: the even charges' under the lease of w1, which holds them;
	// the odd ones' under w2's, which does not.
	errs := make([]error, charges)
	events := make([]string, charges)
	start = make(chan struct{})
	for i := 0; i < charges; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			id := fmt.Sprintf("c%d", i)
			var bill string
			if err := st.Pool.QueryRow(ctx, `SELECT current_bill_id FROM charges WHERE id = $1`, pks[id]).Scan(&bill); err != nil {
				t.Error(err)
				return
			}
			owner := "w1"
			if i%2 == 1 {
				owner = "w2"
			}
			msg := resultMsg(id)
			events[i] = msg.EventID
			errs[i] = st.FinishPlacing(ctx, payflow.PlaceResult{ChargePK: pks[id], BillID: bill, ChargeState: payflow.StateRequested,
				BillStatus: payflow.BillRequested, PGTxID: "tx-" + id, Attempts: 1, Owner: owner}, []outbox.Message{msg})
		}()
	}
	close(start)
	wg.Wait()
	for i := 0; i < charges; i++ {
		id := fmt.Sprintf("c%d", i)
		var state string
		if err := st.Pool.QueryRow(ctx, `SELECT state FROM charges WHERE id = $1`, pks[id]).Scan(&state); err != nil {
			t.Fatal(err)
		}
		published := count(t, st, `SELECT count(*) FROM outbox WHERE event_id = $1`, events[i])
		if i%2 == 0 && (errs[i] != nil || state != "requested" || published != 1) {
			t.Fatalf("%s under the held lease: %v, state %s, %d events; want recorded with its event", id, errs[i], state, published)
		}
		if i%2 == 1 && (!errors.Is(errs[i], store.ErrStale) || state != "placing" || published != 0) {
			t.Fatalf("%s under a lease not held: %v, state %s, %d events; want ErrStale and nothing written", id, errs[i], state, published)
		}
	}
	if largest, total := log.largest("finish_placing"); largest < 2 || total != charges {
		t.Fatalf("results: largest flush %d, %d items flushed; want batches, and all %d", largest, total, charges)
	}
}

// One batch: a stale result (the lease passed to another worker), a
// result for a bill that is no longer current, the same result twice, and
// good ones. Only the good ones (and the first of the pair) commit, each
// with its event.
func TestGroupCommitStaleItemDoesNotFailItsBatch(t *testing.T) {
	st := openGrouped(t, store.GroupCommit{})
	ctx := context.Background()
	var cs []payflow.NewCharge
	for i := 0; i < 5; i++ {
		cs = append(cs, newCharge(fmt.Sprintf("c%d", i), fmt.Sprintf("b%d", i), "w1"))
	}
	pks, created, errs := st.CreateTogether(ctx, cs)
	for i := range cs {
		if errs[i] != nil || !created[i] {
			t.Fatalf("claim %d: %v, created %v", i, errs[i], created[i])
		}
	}
	if _, err := st.Pool.Exec(ctx, `UPDATE charges SET lease_owner = 'w2' WHERE id = $1`, pks[1]); err != nil {
		t.Fatal(err)
	}
	res := func(i int, bill string) payflow.PlaceResult {
		return payflow.PlaceResult{ChargePK: pks[i], BillID: bill, ChargeState: payflow.StateRequested, BillStatus: payflow.BillRequested,
			PGTxID: fmt.Sprintf("tx%d", i), Attempts: 1, Owner: "w1"}
	}
	rs := []payflow.PlaceResult{res(0, "b0"), res(1, "b1"), res(2, "b-other"), res(3, "b3"), res(3, "b3"), res(4, "b4")}
	msgs := make([]outbox.Message, len(rs))
	for i := range rs {
		msgs[i] = resultMsg(fmt.Sprint(i))
	}
	got := st.FinishTogether(ctx, rs, msgs)
	want := []error{nil, store.ErrStale, store.ErrStale, nil, store.ErrStale, nil}
	for i := range rs {
		if !errors.Is(got[i], want[i]) || (want[i] == nil) != (got[i] == nil) {
			t.Fatalf("item %d: %v, want %v (all: %v)", i, got[i], want[i], got)
		}
		published := count(t, st, `SELECT count(*) FROM outbox WHERE event_id = $1`, msgs[i].EventID)
		if (want[i] == nil) != (published == 1) {
			t.Fatalf("item %d: %d events, want %v", i, published, want[i] == nil)
		}
	}
	for i, want := range []string{"requested", "placing", "placing", "requested", "requested"} {
		var state, bill string
		if err := st.Pool.QueryRow(ctx, `SELECT c.state, b.status FROM charges c JOIN bills b ON b.bill_id = c.current_bill_id WHERE c.id = $1`,
			pks[i]).Scan(&state, &bill); err != nil {
			t.Fatal(err)
		}
		wantBill := map[string]string{"requested": "requested", "placing": "pending"}[want]
		if state != want || bill != wantBill {
			t.Fatalf("charge %d: %s with bill %s, want %s with bill %s", i, state, bill, want, wantBill)
		}
	}
}

// A claim whose statement the server refuses fails alone: the batch's
// transaction rolls back, and every other item is sent again and created.
// A claim asked twice in one batch is created once.
func TestGroupCommitRefusedItemFailsAlone(t *testing.T) {
	st := openGrouped(t, store.GroupCommit{})
	ctx := context.Background()
	bad := newCharge("c1", "b1", "w1")
	bad.Bill.Method, bad.Bill.MethodID = payflow.MethodAutoPay, "not-a-uuid"
	cs := []payflow.NewCharge{newCharge("c0", "b0", "w1"), bad, newCharge("c2", "b2", "w1"), newCharge("c2", "b2-again", "w1")}
	_, created, errs := st.CreateTogether(ctx, cs)
	if errs[1] == nil {
		t.Fatal("the refused claim reported no error")
	}
	for _, i := range []int{0, 2, 3} {
		if errs[i] != nil {
			t.Fatalf("claim %d failed with the refused one: %v", i, errs[i])
		}
	}
	if !created[0] || !created[2] || created[3] {
		t.Fatalf("created = %v, want c0 and the first c2 only", created)
	}
	if n := count(t, st, `SELECT count(*) FROM charges`); n != 2 {
		t.Fatalf("%d charges, want 2", n)
	}
	if n := count(t, st, `SELECT count(*) FROM bills WHERE bill_id IN ('b0', 'b2')`); n != 2 {
		t.Fatalf("%d of the created charges' bills, want 2", n)
	}
}

// The members' default-method reads of concurrent charges go together,
// one statement for a batch, and each caller gets its own member's method
// as a read alone would give it: the active default (not another active
// method, not a default it replaced), an expired default as it is, the
// method promoted when the default was deleted, nil for a member without
// one or whose only method is deleted, and a copy of its own when its
// member was asked for twice. An id the database cannot hold is nobody's
// and fails none of the reads it is batched with.
func TestGroupCommitGroupsDefaultMethodReads(t *testing.T) {
	log := &flushLog{sizes: map[string][]int{}}
	st := openGrouped(t, store.GroupCommit{MaxBatch: 16, Observer: log})
	ctx := context.Background()
	const members, asks = 60, 3
	want := map[string]*payflow.PaymentMethod{}
	for i := 0; i < members; i++ {
		member := fmt.Sprintf("mem%d", i)
		label := fmt.Sprintf("L%d", i)
		switch i % 6 {
		case 0: // no method
			want[member] = nil
		case 1: // the default, and another active method
			m := pmAdd(t, st, member, label, false)
			pmAdd(t, st, member, label+"-other", false)
			want[member] = &m
		case 2:
			m := pmAdd(t, st, member, label, false)
			if err := st.SetMethodStatus(ctx, m.ID, payflow.MethodExpired); err != nil {
				t.Fatal(err)
			}
			m.Status = payflow.MethodExpired
			want[member] = &m
		case 3: // only a deleted one
			m := pmAdd(t, st, member, label, false)
			if err := st.DeleteMethod(ctx, member, m.ID); err != nil {
				t.Fatal(err)
			}
			want[member] = nil
		case 4: // a new default replaced the old
			pmAdd(t, st, member, label+"-old", true)
			m := pmAdd(t, st, member, label, true)
			want[member] = &m
		case 5: // the default deleted, the other promoted
			m := pmAdd(t, st, member, label, false)
			d := pmAdd(t, st, member, label+"-deleted", true)
			if err := st.DeleteMethod(ctx, member, d.ID); err != nil {
				t.Fatal(err)
			}
			m.Default = true
			want[member] = &m
		}
	}
	// Ids no member can have: Postgres text holds neither NUL nor
	// invalid UTF-8.
	for _, bad := range []string{"mem1\x00", "mem\xff"} {
		want[bad] = nil
	}
	var ids []string
	for id := range want {
		ids = append(ids, id)
	}
	type read struct {
		member string
		m      *payflow.PaymentMethod
	}
	reads := make(chan read, len(ids)*asks)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for _, member := range ids {
		for a := 0; a < asks; a++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				m, err := st.DefaultMethod(ctx, member)
				if err != nil {
					t.Errorf("%q: %v", member, err)
					return
				}
				reads <- read{member, m}
			}()
		}
	}
	close(start)
	wg.Wait()
	close(reads)
	got := map[string][]*payflow.PaymentMethod{}
	for r := range reads {
		w := want[r.member]
		switch {
		case w == nil && r.m != nil:
			t.Errorf("%q: read %+v, want none", r.member, r.m)
		case w != nil && (r.m == nil || r.m.ID != w.ID || r.m.MemberID != r.member || r.m.Status != w.Status ||
			string(r.m.BillingKeyEnc) != string(w.BillingKeyEnc) || !r.m.Default):
			t.Errorf("%q: read %+v, want %+v", r.member, r.m, w)
		}
		for _, other := range got[r.member] {
			if r.m != nil && (other == r.m || &other.BillingKeyEnc[0] == &r.m.BillingKeyEnc[0]) {
				t.Errorf("%q: two callers share one method value", r.member)
			}
		}
		got[r.member] = append(got[r.member], r.m)
	}
	largest, total := log.largest("default_method")
	if good := members * asks; total != good || largest < 2 {
		t.Fatalf("default-method reads: largest flush %d, %d in all; want %d, some grouped", largest, total, good)
	}
}

// A read batch the server fails as a whole (here: a lock it waits for
// past the statement timeout) fails each of its callers once. Its reads
// are not sent again one by one, which would hold every later charge's
// read for a timeout each.
func TestGroupCommitFailedReadBatchIsNotSentAgainAlone(t *testing.T) {
	log := &flushLog{sizes: map[string][]int{}}
	dsn := testdb.NewDSN(t)
	ctx := context.Background()
	if err := store.Migrate(ctx, dsn); err != nil {
		t.Fatal(err)
	}
	st, err := store.OpenWith(ctx, dsn, store.Options{StatementTimeout: 300 * time.Millisecond,
		GroupCommit: store.GroupCommit{Observer: log}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	pmAdd(t, st, "mem", "A", false)

	tx, err := st.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `LOCK TABLE payment_methods IN ACCESS EXCLUSIVE MODE`); err != nil {
		t.Fatal(err)
	}
	const readers = 20
	errs := make(chan error, readers)
	var wg sync.WaitGroup
	for range readers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := st.DefaultMethod(ctx, "mem")
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	for err := range errs {
		if err == nil {
			t.Error("a read under the lock succeeded")
		}
	}
	if largest, total := log.largest("default_method"); total != readers || largest < 2 {
		t.Fatalf("flushes carried %d reads in all (largest %d); want each of the %d once, some grouped", total, largest, readers)
	}
	if m, err := st.DefaultMethod(ctx, "mem"); err != nil || m == nil {
		t.Fatalf("after the lock: %+v, %v", m, err)
	}
}

// A flush whose connection goes silent is given up after the group
// commit's timeout, and the flush slot passes on: found by review, the
// flush ran without a deadline, so one silent connection held the slot
// until TCP gave up (many minutes) while every claim and result of the
// process queued behind it.
func TestGroupCommitGivesUpAFlushOnASilentConnection(t *testing.T) {
	ctx := context.Background()
	dsn := testdb.NewDSN(t)
	if err := store.Migrate(ctx, dsn); err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	proxy := testnet.NewSilencer(t, u.Host)
	u.Host = proxy.Addr()
	st, err := store.OpenWith(ctx, u.String(), store.Options{GroupCommit: store.GroupCommit{Timeout: 300 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	defer proxy.Close() // first: pgx's cancel request of the silent read is stuck too
	if _, err := st.DefaultMethod(ctx, "mem1"); err != nil {
		t.Fatal(err)
	}
	read := func() <-chan error {
		got := make(chan error, 1)
		go func() {
			_, err := st.DefaultMethod(ctx, "mem1")
			got <- err
		}()
		return got
	}
	proxy.Silence(true)
	select {
	case err := <-read():
		if err == nil {
			t.Fatal("a read on a silent connection succeeded")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a read on a silent connection still waits after 10 s: the flush has no deadline")
	}
	proxy.Silence(false)
	select {
	case err := <-read():
		if err != nil {
			t.Fatalf("the next read, on a new connection: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the next read still waits: the silent flush holds the slot")
	}
}
