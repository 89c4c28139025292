// Package pgclienttest is the behavioural suite every pgclient.Client
// adapter must pass, so that the worker can rely on the interface's promises
// (idempotent ids, error kinds) whichever PG is behind it.
package pgclienttest

import (
	"context"
	"testing"

	"github.com/google/uuid"

	"github.com/payflow/payflow/pgclient"
)

// Harness gives the suite an adapter and what it needs to drive the PG.
type Harness struct {
	// New returns a client on a fresh or shared PG.
	New func(t *testing.T) pgclient.Client
	// Pay makes the PG consider a requested bill paid, as a customer
	// paying would. Tests that need it are skipped when nil.
	Pay func(t *testing.T, billID string)
	// Billing keys with the documented behaviours.
	GoodKey, DeclineKey, ExpiredKey string
}

// Run runs the suite.
func Run(t *testing.T, h Harness) {
	ctx := context.Background()
	newBill := func() string { return "b_" + uuid.NewString() }
	kind := func(t *testing.T, err error, want pgclient.Kind) {
		t.Helper()
		if got := pgclient.KindOf(err); err == nil || got != want {
			t.Fatalf("err = %v (kind %s), want kind %s", err, got, want)
		}
	}
	paidBill := func(t *testing.T, c pgclient.Client, amount int64) string {
		t.Helper()
		if h.Pay == nil {
			t.Skip("harness cannot pay bills")
		}
		id := newBill()
		if _, err := c.SendKakaoBill(ctx, pgclient.KakaoBillRequest{BillID: id, Phone: "+821012345678", Name: "n", Amount: amount, OrderName: "o"}); err != nil {
			t.Fatal(err)
		}
		h.Pay(t, id)
		return id
	}

	t.Run("AutoPayAcceptedAndLookedUp", func(t *testing.T) {
		c := h.New(t)
		id := newBill()
		acc, err := c.AutoPay(ctx, pgclient.AutoPayRequest{BillID: id, BillingKey: h.GoodKey, Amount: 1000, OrderName: "o"})
		if err != nil || acc.BillID != id {
			t.Fatalf("auto-pay: %+v %v", acc, err)
		}
		p, err := c.LookupPayment(ctx, id)
		if err != nil || p.BillID != id || p.Amount != 1000 || p.Status == pgclient.StatusFailed {
			t.Fatalf("lookup: %+v %v", p, err)
		}
	})
	t.Run("DeclinesCarryTheirCode", func(t *testing.T) {
		c := h.New(t)
		for key, code := range map[string]string{h.DeclineKey: "declined", h.ExpiredKey: "expired"} {
			id := newBill()
			_, err := c.AutoPay(ctx, pgclient.AutoPayRequest{BillID: id, BillingKey: key, Amount: 1000, OrderName: "o"})
			kind(t, err, pgclient.KindDeclined)
			if e := err.(*pgclient.Error); e.Code != code {
				t.Fatalf("decline code = %q, want %q", e.Code, code)
			}
			// The refused bill is known to the PG, with its decline.
			if p, err := c.LookupPayment(ctx, id); err != nil || p.Status != pgclient.StatusFailed || p.Decline != code {
				t.Fatalf("lookup of declined bill: %+v %v", p, err)
			}
		}
	})
	t.Run("DuplicateBillIDIsRefused", func(t *testing.T) {
		c := h.New(t)
		id := newBill()
		if _, err := c.AutoPay(ctx, pgclient.AutoPayRequest{BillID: id, BillingKey: h.GoodKey, Amount: 1000, OrderName: "o"}); err != nil {
			t.Fatal(err)
		}
		_, err := c.AutoPay(ctx, pgclient.AutoPayRequest{BillID: id, BillingKey: h.GoodKey, Amount: 1000, OrderName: "o"})
		kind(t, err, pgclient.KindDuplicate)
		_, err = c.SendKakaoBill(ctx, pgclient.KakaoBillRequest{BillID: id, Phone: "+821012345678", Amount: 1000, OrderName: "o"})
		kind(t, err, pgclient.KindDuplicate)
	})
	t.Run("UnknownBillIsNotFound", func(t *testing.T) {
		c := h.New(t)
		_, err := c.LookupPayment(ctx, newBill())
		kind(t, err, pgclient.KindNotFound)
		kind(t, c.DestroyBill(ctx, newBill()), pgclient.KindNotFound)
	})
	t.Run("InvalidRequestIsInvalid", func(t *testing.T) {
		c := h.New(t)
		_, err := c.SendKakaoBill(ctx, pgclient.KakaoBillRequest{BillID: newBill(), Phone: "", Amount: -1})
		kind(t, err, pgclient.KindInvalid)
	})
	t.Run("KakaoBillURLAndDestroy", func(t *testing.T) {
		c := h.New(t)
		id := newBill()
		if _, err := c.SendKakaoBill(ctx, pgclient.KakaoBillRequest{BillID: id, Phone: "+821012345678", Name: "n", Amount: 2000, OrderName: "o"}); err != nil {
			t.Fatal(err)
		}
		u, err := c.BillURL(ctx, id)
		if err != nil || u.URL == "" || u.ExpiresAt.IsZero() {
			t.Fatalf("bill url: %+v %v", u, err)
		}
		if err := c.DestroyBill(ctx, id); err != nil {
			t.Fatal(err)
		}
		if err := c.DestroyBill(ctx, id); err != nil {
			t.Fatalf("destroying twice must succeed: %v", err)
		}
		if p, _ := c.LookupPayment(ctx, id); p.Status != pgclient.StatusCancelled {
			t.Fatalf("status after destroy = %s", p.Status)
		}
	})
	t.Run("DestroyPaidBillIsConflict", func(t *testing.T) {
		c := h.New(t)
		id := paidBill(t, c, 1000)
		kind(t, c.DestroyBill(ctx, id), pgclient.KindConflict)
	})
	t.Run("RefundsPartialFullOverAndIdempotent", func(t *testing.T) {
		c := h.New(t)
		id := paidBill(t, c, 5000)
		r1, err := c.Refund(ctx, pgclient.RefundRequest{BillID: id, RefundID: "r1-" + id, Amount: 2000})
		if err != nil || r1.RefundedTotal != 2000 {
			t.Fatalf("partial: %+v %v", r1, err)
		}
		again, err := c.Refund(ctx, pgclient.RefundRequest{BillID: id, RefundID: "r1-" + id, Amount: 2000})
		if err != nil || again.RefundedTotal != 2000 {
			t.Fatalf("repeated refund id refunded again: %+v %v", again, err)
		}
		_, err = c.Refund(ctx, pgclient.RefundRequest{BillID: id, RefundID: "r2-" + id, Amount: 3001})
		kind(t, err, pgclient.KindConflict)
		r3, err := c.Refund(ctx, pgclient.RefundRequest{BillID: id, RefundID: "r3-" + id, Amount: 3000})
		if err != nil || r3.RefundedTotal != 5000 {
			t.Fatalf("full: %+v %v", r3, err)
		}
		if p, _ := c.LookupPayment(ctx, id); p.Refunded != 5000 {
			t.Fatalf("refunded at PG = %d", p.Refunded)
		}
	})
	t.Run("RefundOfUnpaidBillIsConflict", func(t *testing.T) {
		c := h.New(t)
		id := newBill()
		if _, err := c.SendKakaoBill(ctx, pgclient.KakaoBillRequest{BillID: id, Phone: "+821012345678", Amount: 1000, OrderName: "o"}); err != nil {
			t.Fatal(err)
		}
		_, err := c.Refund(ctx, pgclient.RefundRequest{BillID: id, RefundID: "r-" + id, Amount: 100})
		kind(t, err, pgclient.KindConflict)
	})
}
