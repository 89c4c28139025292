// Package pgclienttest owns the behavioural suite every pgclient.Client
// adapter must pass, so that the worker can rely on the interface's promises
// (a bill id is placed once, a refund id is idempotent, each failure has the
// documented Kind) whichever PG is behind it. An adapter's tests call Run
// with a Harness; capabilities a PG's sandbox lacks are left nil and the
// tests that need them are skipped, never silently passed.
//
// It runs against every client payflow has, adapters and test doubles
// alike, so that no test draws conclusions from a PG that breaks the
// contract:
//
//   - pgclient.HTTPClient, on pgsim served over HTTP, with and without an
//     API key and latency (pgclient/pgsim);
//   - pgsim.Client, the simulator's in-process client, which the api
//     package's tests use as their PG (pgclient/pgsim);
//   - payssam.Client, on pgsim speaking the PaySSam protocol, through one
//     store and across several (pgclient/payssam);
//   - the simulation's PG, sim.PG's client (sim);
//   - pgclient.Observed and pgclient.Sanitized, the wrappers payflow puts
//     around every client, over pgsim.Client (pgclient/pgsim);
//   - the worker tests' fake PG (worker).
//
// The app tests' PGs that hold or fail a few calls wrap pgsim.Client, so
// every call they do not fake is answered by a PG this suite checks.
package pgclienttest

import (
	"context"
	"errors"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/payflow/payflow/pgclient"
)

// Capabilities: what a PG cannot do (pgclient.CapabilitiesOf the adapter) is
// tested as refused, with pgclient.CodeNotSupported; the tests of what it
// would do otherwise are replaced by their full-cancel-only counterparts.
//
// Harness gives the suite an adapter and what it needs to drive the PG.
type Harness struct {
	// New returns a client on a fresh or shared PG. Bill and refund ids
	// are random, so one PG may serve every test. The PG must not settle
	// bills by itself while a test runs (no automatic payment of auto-pays
	// or KakaoTalk bills): the suite decides, through Settle.
	New func(t *testing.T) pgclient.Client
	// Settle forces a requested bill to a final status (paid, failed,
	// cancelled, expired) as the customer, the card network or the PG's
	// expiry would. Nil when the PG offers no way; tests that need a paid
	// bill are then skipped.
	Settle func(t *testing.T, billID string, status pgclient.PaymentStatus)
	// GoodKey is a billing key the PG accepts.
	GoodKey string
	// DeclineKeys maps each decline code (payflow.DeclineCode values:
	// declined, expired, limit_exceeded, invalid_billing_key) to a billing
	// key the PG refuses with it. Codes missing here are skipped.
	DeclineKeys map[string]string
	// Phone is a KakaoTalk recipient the PG accepts; +821012345678 when
	// empty.
	Phone string
}

// DeclineCodes are the codes the suite expects a PG adapter to report.
var DeclineCodes = []string{"declined", "expired", "limit_exceeded", "invalid_billing_key"}

// Run runs the suite. Subtests run in parallel: an adapter must be safe for
// concurrent use, as the worker calls it from many goroutines.
func Run(t *testing.T, h Harness) {
	if h.New == nil || h.GoodKey == "" {
		t.Fatal("pgclienttest: Harness.New and Harness.GoodKey are required")
	}
	s := &suite{h: h, phone: h.Phone}
	if s.phone == "" {
		s.phone = "+821012345678"
	}
	// The group returns once every parallel test has finished, so a caller
	// can check its PG's state after Run.
	t.Run("pgclienttest", func(t *testing.T) { s.runAll(t) })
}

func (s *suite) runAll(t *testing.T) {
	for _, tc := range []struct {
		name string
		run  func(*testing.T)
	}{
		{"AutoPayAcceptedAndLookedUp", s.autoPayAccepted},
		{"AutoPayDeclines", s.autoPayDeclines},
		{"KakaoBillAcceptedAndLookedUp", s.kakaoBillAccepted},
		{"DuplicateBillIDIsRefusedAndChangesNothing", s.duplicateBillID},
		{"ConcurrentSameBillIDPlacedOnce", s.concurrentSameBillID},
		{"UnknownBillIsNotFound", s.unknownBill},
		{"InvalidRequestsAreInvalidAndPlaceNothing", s.invalidRequests},
		{"BillURL", s.billURL},
		{"DestroyUnpaidBillIsIdempotent", s.destroyUnpaid},
		{"DestroyFinalBillIsConflict", s.destroyFinal},
		{"RefundsPartialFullOverAndIdempotent", s.refunds},
		{"RefundIDReusedForAnotherRefund", s.refundIDReused},
		{"FullCancelOnlyRefusesPartialRefunds", s.refundsFullOnly},
		{"FullCancelOnlyRefundIDReused", s.refundIDReusedFullOnly},
		{"RefundOfUnpaidOrUnknownBill", s.refundUnpaid},
		{"SettledStatusesAreLookedUp", s.settledStatuses},
		{"CancelledContextIsRetriable", s.cancelledContext},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.run(t)
		})
	}
}

type suite struct {
	h     Harness
	phone string
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

func newID(prefix string) string { return prefix + uuid.NewString() }

// wantKind fails unless err is a *pgclient.Error of kind want for op.
func wantKind(t *testing.T, err error, op string, want pgclient.Kind) *pgclient.Error {
	t.Helper()
	var e *pgclient.Error
	if !errors.As(err, &e) {
		t.Fatalf("err = %v (%T), want a *pgclient.Error of kind %s", err, err, want)
	}
	if e.Kind != want {
		t.Fatalf("err = %v, want kind %s", err, want)
	}
	if e.Op != op {
		t.Fatalf("err.Op = %q, want %q", e.Op, op)
	}
	return e
}

func (s *suite) autoPay(t *testing.T, c pgclient.Client, billID, key string, amount int64) (pgclient.Accepted, error) {
	return c.AutoPay(ctx(t), pgclient.AutoPayRequest{BillID: billID, MerchantID: "m1", BillingKey: key, Amount: amount, OrderName: "suite order"})
}

func (s *suite) kakao(t *testing.T, c pgclient.Client, billID string, amount int64) (pgclient.Accepted, error) {
	return c.SendKakaoBill(ctx(t), pgclient.KakaoBillRequest{BillID: billID, MerchantID: "m1", Phone: s.phone, Name: "Kim", Amount: amount, OrderName: "suite order"})
}

func (s *suite) lookup(t *testing.T, c pgclient.Client, billID string) pgclient.Payment {
	t.Helper()
	p, err := c.LookupPayment(ctx(t), billID)
	if err != nil {
		t.Fatalf("lookup %s: %v", billID, err)
	}
	if p.BillID != billID {
		t.Fatalf("lookup %s returned bill %q", billID, p.BillID)
	}
	return p
}

// placedKakao places a KakaoTalk bill, which stays requested until settled.
func (s *suite) placedKakao(t *testing.T, c pgclient.Client, amount int64) string {
	t.Helper()
	id := newID("b_")
	if _, err := s.kakao(t, c, id, amount); err != nil {
		t.Fatalf("kakao bill: %v", err)
	}
	return id
}

func (s *suite) needSettle(t *testing.T) {
	t.Helper()
	if s.h.Settle == nil {
		t.Skip("the harness cannot settle bills")
	}
}

func (s *suite) paidBill(t *testing.T, c pgclient.Client, amount int64) string {
	t.Helper()
	s.needSettle(t)
	id := s.placedKakao(t, c, amount)
	s.h.Settle(t, id, pgclient.StatusPaid)
	if p := s.lookup(t, c, id); p.Status != pgclient.StatusPaid || p.Amount != amount {
		t.Fatalf("after settling paid: %+v", p)
	}
	return id
}

func (s *suite) autoPayAccepted(t *testing.T) {
	c := s.h.New(t)
	id := newID("b_")
	acc, err := s.autoPay(t, c, id, s.h.GoodKey, 1000)
	if err != nil {
		t.Fatalf("auto-pay: %v", err)
	}
	if acc.BillID != id || acc.PGTxID == "" {
		t.Fatalf("accepted = %+v", acc)
	}
	p := s.lookup(t, c, id)
	if p.Method != "auto_pay" || p.Amount != 1000 || p.Refunded != 0 || p.Decline != "" || p.PGTxID != acc.PGTxID {
		t.Fatalf("lookup = %+v, accepted %+v", p, acc)
	}
	if p.Status != pgclient.StatusRequested && p.Status != pgclient.StatusPaid {
		t.Fatalf("status of an accepted auto-pay = %s", p.Status)
	}
}

func (s *suite) autoPayDeclines(t *testing.T) {
	for _, code := range DeclineCodes {
		t.Run(code, func(t *testing.T) {
			key, ok := s.h.DeclineKeys[code]
			if !ok {
				t.Skipf("the harness has no billing key declined with %s", code)
			}
			c := s.h.New(t)
			id := newID("b_")
			_, err := s.autoPay(t, c, id, key, 1000)
			e := wantKind(t, err, "auto_pay", pgclient.KindDeclined)
			if e.Code != code {
				t.Fatalf("decline code = %q, want %q", e.Code, code)
			}
			if pgclient.Retriable(err) {
				t.Fatal("a decline must not be retriable")
			}
			// The refused bill is known to the PG with its decline, so a
			// caller that lost the answer can learn it by lookup.
			p := s.lookup(t, c, id)
			if p.Status != pgclient.StatusFailed || p.Decline != code || p.Method != "auto_pay" {
				t.Fatalf("lookup of declined bill = %+v", p)
			}
			// And its id is spent: the fallback needs a new bill id.
			_, err = s.kakao(t, c, id, 1000)
			wantKind(t, err, "kakao_bill", pgclient.KindDuplicate)
		})
	}
}

func (s *suite) kakaoBillAccepted(t *testing.T) {
	c := s.h.New(t)
	id := newID("b_")
	acc, err := s.kakao(t, c, id, 2500)
	if err != nil {
		t.Fatalf("kakao bill: %v", err)
	}
	if acc.BillID != id || acc.PGTxID == "" {
		t.Fatalf("accepted = %+v", acc)
	}
	p := s.lookup(t, c, id)
	if p.Method != "kakao_bill" || p.Status != pgclient.StatusRequested || p.Amount != 2500 || p.PGTxID != acc.PGTxID {
		t.Fatalf("lookup = %+v", p)
	}
}

func (s *suite) duplicateBillID(t *testing.T) {
	c := s.h.New(t)
	for _, first := range []string{"auto_pay", "kakao_bill"} {
		for _, second := range []string{"auto_pay", "kakao_bill"} {
			t.Run(first+"_then_"+second, func(t *testing.T) {
				id := newID("b_")
				var err error
				if first == "auto_pay" {
					_, err = s.autoPay(t, c, id, s.h.GoodKey, 1000)
				} else {
					_, err = s.kakao(t, c, id, 1000)
				}
				if err != nil {
					t.Fatal(err)
				}
				before := s.lookup(t, c, id)
				if second == "auto_pay" {
					_, err = s.autoPay(t, c, id, s.h.GoodKey, 7777)
				} else {
					_, err = s.kakao(t, c, id, 7777)
				}
				wantKind(t, err, second, pgclient.KindDuplicate)
				after := s.lookup(t, c, id)
				if after.Amount != 1000 || after.Method != before.Method || after.PGTxID != before.PGTxID {
					t.Fatalf("a refused duplicate changed the bill: %+v → %+v", before, after)
				}
			})
		}
	}
}

// The PG's own guard against double charges: however many copies of one
// bill race, one is placed.
func (s *suite) concurrentSameBillID(t *testing.T) {
	c := s.h.New(t)
	id := newID("b_")
	const n = 16
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = s.autoPay(t, c, id, s.h.GoodKey, 1000)
		}()
	}
	wg.Wait()
	ok := 0
	for _, err := range errs {
		switch {
		case err == nil:
			ok++
		case pgclient.KindOf(err) != pgclient.KindDuplicate:
			t.Fatalf("a racing copy failed with %v, want duplicate", err)
		}
	}
	if ok != 1 {
		t.Fatalf("%d of %d racing copies of one bill were accepted", ok, n)
	}
}

func (s *suite) unknownBill(t *testing.T) {
	c := s.h.New(t)
	_, err := c.LookupPayment(ctx(t), newID("never_"))
	wantKind(t, err, "lookup", pgclient.KindNotFound)
	_, err = c.BillURL(ctx(t), newID("never_"))
	wantKind(t, err, "bill_url", pgclient.KindNotFound)
	wantKind(t, c.DestroyBill(ctx(t), newID("never_")), "destroy", pgclient.KindNotFound)
	if pgclient.Retriable(err) {
		t.Fatal("not found must not be retriable")
	}
}

func (s *suite) invalidRequests(t *testing.T) {
	c := s.h.New(t)
	cases := []struct {
		name string
		op   string
		call func(id string) error
	}{
		{"auto-pay without bill id", "auto_pay", func(string) error { _, err := s.autoPay(t, c, "", s.h.GoodKey, 1000); return err }},
		{"auto-pay of zero", "auto_pay", func(id string) error { _, err := s.autoPay(t, c, id, s.h.GoodKey, 0); return err }},
		{"auto-pay of a negative amount", "auto_pay", func(id string) error { _, err := s.autoPay(t, c, id, s.h.GoodKey, -5); return err }},
		{"auto-pay above the maximum", "auto_pay", func(id string) error { _, err := s.autoPay(t, c, id, s.h.GoodKey, 100_000_001); return err }},
		{"auto-pay without billing key", "auto_pay", func(id string) error { _, err := s.autoPay(t, c, id, "", 1000); return err }},
		{"kakao bill without phone", "kakao_bill", func(id string) error {
			_, err := c.SendKakaoBill(ctx(t), pgclient.KakaoBillRequest{BillID: id, Amount: 1000, OrderName: "o"})
			return err
		}},
		{"kakao bill of zero", "kakao_bill", func(id string) error { _, err := s.kakao(t, c, id, 0); return err }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			id := newID("b_")
			err := tc.call(id)
			wantKind(t, err, tc.op, pgclient.KindInvalid)
			if pgclient.Retriable(err) {
				t.Fatal("an invalid request must not be retriable")
			}
			_, err = c.LookupPayment(ctx(t), id)
			wantKind(t, err, "lookup", pgclient.KindNotFound)
		})
	}
}

func (s *suite) billURL(t *testing.T) {
	c := s.h.New(t)
	id := s.placedKakao(t, c, 3000)
	u, err := c.BillURL(ctx(t), id)
	if err != nil {
		t.Fatalf("bill url: %v", err)
	}
	if parsed, err := url.Parse(u.URL); err != nil || !parsed.IsAbs() || parsed.Host == "" {
		t.Fatalf("bill url %q is not an absolute URL", u.URL)
	}
	if !u.ExpiresAt.After(time.Now()) {
		t.Fatalf("bill url expires at %s, in the past", u.ExpiresAt)
	}
	again, err := c.BillURL(ctx(t), id)
	if err != nil || again.URL != u.URL {
		t.Fatalf("bill url asked again: %+v %v, first %+v", again, err, u)
	}
	// A bill that can no longer be paid has no pay URL.
	if err := c.DestroyBill(ctx(t), id); err != nil {
		t.Fatal(err)
	}
	_, err = c.BillURL(ctx(t), id)
	wantKind(t, err, "bill_url", pgclient.KindConflict)
}

func (s *suite) destroyUnpaid(t *testing.T) {
	c := s.h.New(t)
	id := s.placedKakao(t, c, 2000)
	if err := c.DestroyBill(ctx(t), id); err != nil {
		t.Fatalf("destroy: %v", err)
	}
	if p := s.lookup(t, c, id); p.Status != pgclient.StatusCancelled || p.Amount != 2000 {
		t.Fatalf("after destroy: %+v", p)
	}
	// Destroying again is how a caller recovers from a lost answer.
	if err := c.DestroyBill(ctx(t), id); err != nil {
		t.Fatalf("destroying twice must succeed: %v", err)
	}
	_, err := c.Refund(ctx(t), pgclient.RefundRequest{BillID: id, RefundID: newID("r_"), Amount: 100})
	wantKind(t, err, "refund", pgclient.KindConflict)
}

func (s *suite) destroyFinal(t *testing.T) {
	s.needSettle(t)
	c := s.h.New(t)
	for _, status := range []pgclient.PaymentStatus{pgclient.StatusPaid, pgclient.StatusExpired, pgclient.StatusFailed} {
		t.Run(string(status), func(t *testing.T) {
			id := s.placedKakao(t, c, 1000)
			s.h.Settle(t, id, status)
			err := c.DestroyBill(ctx(t), id)
			wantKind(t, err, "destroy", pgclient.KindConflict)
			if pgclient.Retriable(err) {
				t.Fatal("a conflict must not be retriable")
			}
			if p := s.lookup(t, c, id); p.Status != status {
				t.Fatalf("a refused destroy changed the bill to %s", p.Status)
			}
		})
	}
}

// needPartialRefunds skips a test of partial refunds on a PG that cancels
// only in full; the FullCancelOnly tests cover that PG instead.
func needPartialRefunds(t *testing.T, c pgclient.Client) {
	t.Helper()
	if !pgclient.CapabilitiesOf(c).PartialRefund {
		t.Skip("the PG cancels only in full: see the FullCancelOnly tests")
	}
}

func needFullCancelOnly(t *testing.T, c pgclient.Client) {
	t.Helper()
	if pgclient.CapabilitiesOf(c).PartialRefund {
		t.Skip("the PG refunds partially: see the partial refund tests")
	}
}

func (s *suite) refunds(t *testing.T) {
	c := s.h.New(t)
	needPartialRefunds(t, c)
	id := s.paidBill(t, c, 5000)
	refund := func(refundID string, amount int64) (pgclient.Refunded, error) {
		return c.Refund(ctx(t), pgclient.RefundRequest{BillID: id, RefundID: refundID, Amount: amount, Reason: "suite"})
	}
	r1ID := newID("r_")
	r1, err := refund(r1ID, 2000)
	if err != nil || r1.RefundID != r1ID || r1.Amount != 2000 || r1.RefundedTotal != 2000 {
		t.Fatalf("partial refund: %+v %v", r1, err)
	}
	again, err := refund(r1ID, 2000)
	if err != nil || again != r1 {
		t.Fatalf("repeating a refund id must return the first answer: %+v %v, first %+v", again, err, r1)
	}
	if p := s.lookup(t, c, id); p.Refunded != 2000 || p.Status != pgclient.StatusPaid {
		t.Fatalf("a repeated refund id refunded again: %+v", p)
	}
	_, err = refund(newID("r_"), 3001)
	e := wantKind(t, err, "refund", pgclient.KindConflict)
	if pgclient.Retriable(e) {
		t.Fatal("a refund above what was paid must not be retriable")
	}
	// The refused refund reserved nothing: the exact rest still goes.
	r3, err := refund(newID("r_"), 3000)
	if err != nil || r3.RefundedTotal != 5000 {
		t.Fatalf("full refund of the rest: %+v %v", r3, err)
	}
	if p := s.lookup(t, c, id); p.Refunded != 5000 {
		t.Fatalf("refunded at the PG = %d, want 5000", p.Refunded)
	}
	_, err = refund(newID("r_"), 1)
	wantKind(t, err, "refund", pgclient.KindConflict)
	// Even after later refunds, a repeated id answers as it first did.
	if again, err := refund(r1ID, 2000); err != nil || again != r1 {
		t.Fatalf("repeated refund id after the bill was fully refunded: %+v %v", again, err)
	}
	// A full refund in one go.
	whole := s.paidBill(t, c, 1200)
	rw, err := c.Refund(ctx(t), pgclient.RefundRequest{BillID: whole, RefundID: newID("r_"), Amount: 1200})
	if err != nil || rw.RefundedTotal != 1200 {
		t.Fatalf("full refund: %+v %v", rw, err)
	}
}

func (s *suite) refundIDReused(t *testing.T) {
	c := s.h.New(t)
	needPartialRefunds(t, c)
	id := s.paidBill(t, c, 5000)
	rid := newID("r_")
	if _, err := c.Refund(ctx(t), pgclient.RefundRequest{BillID: id, RefundID: rid, Amount: 1000}); err != nil {
		t.Fatal(err)
	}
	_, err := c.Refund(ctx(t), pgclient.RefundRequest{BillID: id, RefundID: rid, Amount: 1500})
	if k := pgclient.KindOf(err); k != pgclient.KindDuplicate && k != pgclient.KindConflict {
		t.Fatalf("a refund id reused with another amount: %v, want duplicate or conflict", err)
	}
	if p := s.lookup(t, c, id); p.Refunded != 1000 {
		t.Fatalf("a reused refund id refunded %d in all, want 1000", p.Refunded)
	}
}

// refundsFullOnly: a PG that cancels only in full refuses a partial refund
// as not supported, before anything is refunded, whether or not the caller
// says what was paid; the full amount goes once, and a repeated refund id
// answers as it first did.
func (s *suite) refundsFullOnly(t *testing.T) {
	c := s.h.New(t)
	needFullCancelOnly(t, c)
	id := s.paidBill(t, c, 5000)
	refund := func(refundID string, amount, paid int64) (pgclient.Refunded, error) {
		return c.Refund(ctx(t), pgclient.RefundRequest{BillID: id, RefundID: refundID, Amount: amount, Reason: "suite", PaidAmount: paid})
	}
	for _, paid := range []int64{0, 5000} {
		_, err := refund(newID("r_"), 2000, paid)
		e := wantKind(t, err, "refund", pgclient.KindInvalid)
		if e.Code != pgclient.CodeNotSupported || !pgclient.NotSupported(err) || pgclient.Retriable(err) {
			t.Fatalf("partial refund (paid amount given: %d): %v, want code %s", paid, err, pgclient.CodeNotSupported)
		}
	}
	if p := s.lookup(t, c, id); p.Refunded != 0 || p.Status != pgclient.StatusPaid {
		t.Fatalf("a refused partial refund changed the bill: %+v", p)
	}
	_, err := refund(newID("r_"), 5001, 0)
	wantKind(t, err, "refund", pgclient.KindConflict)
	rid := newID("r_")
	r1, err := refund(rid, 5000, 5000)
	if err != nil || r1.RefundID != rid || r1.Amount != 5000 || r1.RefundedTotal != 5000 {
		t.Fatalf("full refund: %+v %v", r1, err)
	}
	again, err := refund(rid, 5000, 5000)
	if err != nil || again != r1 {
		t.Fatalf("repeating a refund id must return the first answer: %+v %v, first %+v", again, err, r1)
	}
	if p := s.lookup(t, c, id); p.Refunded != 5000 || p.Amount != 5000 || p.Status != pgclient.StatusPaid {
		t.Fatalf("after the full refund: %+v", p)
	}
	_, err = refund(newID("r_"), 1, 0)
	wantKind(t, err, "refund", pgclient.KindConflict)
}

func (s *suite) refundIDReusedFullOnly(t *testing.T) {
	c := s.h.New(t)
	needFullCancelOnly(t, c)
	id := s.paidBill(t, c, 5000)
	rid := newID("r_")
	if _, err := c.Refund(ctx(t), pgclient.RefundRequest{BillID: id, RefundID: rid, Amount: 5000}); err != nil {
		t.Fatal(err)
	}
	_, err := c.Refund(ctx(t), pgclient.RefundRequest{BillID: id, RefundID: rid, Amount: 1500})
	if k := pgclient.KindOf(err); k != pgclient.KindDuplicate && k != pgclient.KindConflict {
		t.Fatalf("a refund id reused with another amount: %v, want duplicate or conflict", err)
	}
	if p := s.lookup(t, c, id); p.Refunded != 5000 {
		t.Fatalf("a reused refund id refunded %d in all, want 5000", p.Refunded)
	}
}

func (s *suite) refundUnpaid(t *testing.T) {
	c := s.h.New(t)
	id := s.placedKakao(t, c, 1000)
	_, err := c.Refund(ctx(t), pgclient.RefundRequest{BillID: id, RefundID: newID("r_"), Amount: 100})
	wantKind(t, err, "refund", pgclient.KindConflict)
	declined := newID("b_")
	for _, key := range s.h.DeclineKeys {
		if _, err := s.autoPay(t, c, declined, key, 1000); pgclient.KindOf(err) != pgclient.KindDeclined {
			t.Fatalf("auto-pay with a declined key: %v", err)
		}
		_, err := c.Refund(ctx(t), pgclient.RefundRequest{BillID: declined, RefundID: newID("r_"), Amount: 100})
		wantKind(t, err, "refund", pgclient.KindConflict)
		break
	}
	_, err = c.Refund(ctx(t), pgclient.RefundRequest{BillID: newID("never_"), RefundID: newID("r_"), Amount: 100})
	wantKind(t, err, "refund", pgclient.KindNotFound)
	_, err = c.Refund(ctx(t), pgclient.RefundRequest{BillID: id, RefundID: newID("r_"), Amount: 0})
	wantKind(t, err, "refund", pgclient.KindInvalid)
}

func (s *suite) settledStatuses(t *testing.T) {
	s.needSettle(t)
	c := s.h.New(t)
	for _, status := range []pgclient.PaymentStatus{pgclient.StatusPaid, pgclient.StatusFailed, pgclient.StatusExpired, pgclient.StatusCancelled} {
		t.Run(string(status), func(t *testing.T) {
			id := s.placedKakao(t, c, 4000)
			s.h.Settle(t, id, status)
			if p := s.lookup(t, c, id); p.Status != status || p.Amount != 4000 {
				t.Fatalf("lookup after settling %s: %+v", status, p)
			}
		})
	}
	t.Run("auto_pay_failed", func(t *testing.T) {
		id := newID("b_")
		if _, err := s.autoPay(t, c, id, s.h.GoodKey, 900); err != nil {
			t.Fatal(err)
		}
		s.h.Settle(t, id, pgclient.StatusFailed)
		if p := s.lookup(t, c, id); p.Status != pgclient.StatusFailed || p.Method != "auto_pay" {
			t.Fatalf("lookup: %+v", p)
		}
	})
}

// A caller that gives up (shutdown, its own deadline) gets an error it may
// retry after a lookup, never one that would make it fail the charge.
func (s *suite) cancelledContext(t *testing.T) {
	c := s.h.New(t)
	cctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := c.AutoPay(cctx, pgclient.AutoPayRequest{BillID: newID("b_"), BillingKey: s.h.GoodKey, Amount: 1000, OrderName: "o"})
	if err == nil || !pgclient.Retriable(err) {
		t.Fatalf("auto-pay with a cancelled context: %v, want a retriable error", err)
	}
	_, err = c.LookupPayment(cctx, newID("b_"))
	if err == nil || !pgclient.Retriable(err) {
		t.Fatalf("lookup with a cancelled context: %v, want a retriable error", err)
	}
}
