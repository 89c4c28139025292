package app

import (
	"context"
	"time"

	"github.com/payflow/payflow/pgclient"
	"github.com/payflow/payflow/pgclient/payssam"
)

// instrumentedPG records every PG call's latency and outcome (ok or the
// error kind) without the worker knowing: a decorator around any adapter.
type instrumentedPG struct{ next pgclient.Client }

// Capabilities are the adapter's: the worker checks them before it calls.
func (p instrumentedPG) Capabilities() pgclient.Capabilities { return pgclient.CapabilitiesOf(p.next) }

func (p instrumentedPG) observe(op string, start time.Time, err error) {
	outcome := "ok"
	if err != nil {
		outcome = pgOutcome(pgclient.KindOf(err))
	}
	if payssam.PointsExhausted(err) {
		// Every KakaoTalk bill fails until someone tops the points up.
		metrics.pointsExhausted.WithLabelValues(op).Inc()
	}
	metrics.pgCalls.WithLabelValues(op, outcome).Observe(time.Since(start).Seconds())
}

func (p instrumentedPG) AutoPay(ctx context.Context, r pgclient.AutoPayRequest) (pgclient.Accepted, error) {
	start := time.Now()
	a, err := p.next.AutoPay(ctx, r)
	p.observe("auto_pay", start, err)
	return a, err
}

func (p instrumentedPG) SendKakaoBill(ctx context.Context, r pgclient.KakaoBillRequest) (pgclient.Accepted, error) {
	start := time.Now()
	a, err := p.next.SendKakaoBill(ctx, r)
	p.observe("kakao_bill", start, err)
	return a, err
}

func (p instrumentedPG) BillURL(ctx context.Context, id string) (pgclient.BillURL, error) {
	start := time.Now()
	u, err := p.next.BillURL(ctx, id)
	p.observe("bill_url", start, err)
	return u, err
}

func (p instrumentedPG) LookupPayment(ctx context.Context, id string) (pgclient.Payment, error) {
	start := time.Now()
	pay, err := p.next.LookupPayment(ctx, id)
	p.observe("lookup", start, err)
	return pay, err
}

func (p instrumentedPG) Refund(ctx context.Context, r pgclient.RefundRequest) (pgclient.Refunded, error) {
	start := time.Now()
	res, err := p.next.Refund(ctx, r)
	p.observe("refund", start, err)
	return res, err
}

func (p instrumentedPG) DestroyBill(ctx context.Context, id string) error {
	start := time.Now()
	err := p.next.DestroyBill(ctx, id)
	p.observe("destroy", start, err)
	return err
}

// pgOutcome is the kind as a label value: an adapter may set any Kind, and
// the label takes only the known ones ("other" for the rest), never a PG's
// own code.
func pgOutcome(k pgclient.Kind) string {
	switch k {
	case pgclient.KindTransient, pgclient.KindUnknown, pgclient.KindDeclined, pgclient.KindInvalid,
		pgclient.KindNotFound, pgclient.KindDuplicate, pgclient.KindConflict:
		return string(k)
	}
	return "other"
}
