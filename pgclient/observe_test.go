package pgclient_test

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/payflow/payflow/pgclient"
)

type ctxKey struct{}

// calls records each call it hears, and checks that the call ran with the
// context Call returned.
type calls struct{ got []string }

func (c *calls) Call(ctx context.Context, op string) (context.Context, func(error)) {
	return context.WithValue(ctx, ctxKey{}, op), func(err error) {
		outcome := "ok"
		if err != nil {
			outcome = err.Error()
		}
		c.got = append(c.got, op+" "+outcome)
	}
}

// partialPG cancels only in full, fails lookups, and checks that every
// call carries the observer's context.
type partialPG struct {
	pgclient.Client
	t *testing.T
}

func (p partialPG) Capabilities() pgclient.Capabilities { return pgclient.Capabilities{} }

func (p partialPG) check(ctx context.Context, op string) {
	if got, _ := ctx.Value(ctxKey{}).(string); got != op {
		p.t.Errorf("%s runs without the observer's context (%q)", op, got)
	}
}

func (p partialPG) AutoPay(ctx context.Context, r pgclient.AutoPayRequest) (pgclient.Accepted, error) {
	p.check(ctx, "auto_pay")
	return pgclient.Accepted{BillID: r.BillID}, nil
}

func (p partialPG) SendKakaoBill(ctx context.Context, r pgclient.KakaoBillRequest) (pgclient.Accepted, error) {
	p.check(ctx, "kakao_bill")
	return pgclient.Accepted{BillID: r.BillID}, nil
}

func (p partialPG) BillURL(ctx context.Context, _ string) (pgclient.BillURL, error) {
	p.check(ctx, "bill_url")
	return pgclient.BillURL{}, nil
}

func (p partialPG) LookupPayment(ctx context.Context, _ string) (pgclient.Payment, error) {
	p.check(ctx, "lookup")
	return pgclient.Payment{}, errors.New("not found")
}

func (p partialPG) Refund(ctx context.Context, _ pgclient.RefundRequest) (pgclient.Refunded, error) {
	p.check(ctx, "refund")
	return pgclient.Refunded{}, nil
}

func (p partialPG) DestroyBill(ctx context.Context, _ string) error {
	p.check(ctx, "destroy")
	return nil
}

// Every call is told to the observer, by operation, with its error, and
// runs in the context the observer returned; the adapter's capabilities
// are kept, so a PG that cancels only in full is not sent a partial refund.
func TestObservedTellsEveryCall(t *testing.T) {
	o := &calls{}
	pg := pgclient.Observed(partialPG{t: t}, o)
	ctx := context.Background()
	_, _ = pg.AutoPay(ctx, pgclient.AutoPayRequest{})
	_, _ = pg.SendKakaoBill(ctx, pgclient.KakaoBillRequest{})
	_, _ = pg.BillURL(ctx, "b")
	_, _ = pg.LookupPayment(ctx, "b")
	_, _ = pg.Refund(ctx, pgclient.RefundRequest{})
	_ = pg.DestroyBill(ctx, "b")
	want := []string{"auto_pay ok", "kakao_bill ok", "bill_url ok", "lookup not found", "refund ok", "destroy ok"}
	if !slices.Equal(o.got, want) {
		t.Fatalf("observed %v, want %v", o.got, want)
	}
	if pgclient.CapabilitiesOf(pg).PartialRefund {
		t.Fatal("the observed client claims partial refunds its PG cannot do")
	}
}
