package app

import (
	"context"
	"time"

	"github.com/payflow/payflow/pgclient"
	"github.com/payflow/payflow/pgclient/payssam"
)

// instrumentedPG records every PG call's latency and outcome (ok or the
// error kind) without the worker knowing: a decorator around any adapter.
type instrumentedPG struct {
	next pgclient.Client
	tracing
	m *metricSet
}

// Capabilities are the adapter's: the worker checks them before it calls.
func (p instrumentedPG) Capabilities() pgclient.Capabilities { return pgclient.CapabilitiesOf(p.next) }

// begin starts a call: its span, and its clock for the metrics.
func (p instrumentedPG) begin(ctx context.Context, op string) (context.Context, func(error)) {
	start := time.Now()
	ctx, span := p.pgCall(ctx, op)
	return ctx, func(err error) {
		p.observe(op, start, err)
		if span != nil {
			end(span, err)
		}
	}
}

func (p instrumentedPG) observe(op string, start time.Time, err error) {
	outcome := "ok"
	if err != nil {
		outcome = pgOutcome(pgclient.KindOf(err))
	}
	if payssam.PointsExhausted(err) {
		// Every KakaoTalk bill fails until someone tops the points up.
		p.m.pointsExhausted.WithLabelValues(op).Inc()
	}
	p.m.pgCalls.WithLabelValues(op, outcome).Observe(time.Since(start).Seconds())
}

func (p instrumentedPG) AutoPay(ctx context.Context, r pgclient.AutoPayRequest) (pgclient.Accepted, error) {
	ctx, done := p.begin(ctx, "auto_pay")
	a, err := p.next.AutoPay(ctx, r)
	done(err)
	return a, err
}

func (p instrumentedPG) SendKakaoBill(ctx context.Context, r pgclient.KakaoBillRequest) (pgclient.Accepted, error) {
	ctx, done := p.begin(ctx, "kakao_bill")
	a, err := p.next.SendKakaoBill(ctx, r)
	done(err)
	return a, err
}

func (p instrumentedPG) BillURL(ctx context.Context, id string) (pgclient.BillURL, error) {
	ctx, done := p.begin(ctx, "bill_url")
	u, err := p.next.BillURL(ctx, id)
	done(err)
	return u, err
}

func (p instrumentedPG) LookupPayment(ctx context.Context, id string) (pgclient.Payment, error) {
	ctx, done := p.begin(ctx, "lookup")
	pay, err := p.next.LookupPayment(ctx, id)
	done(err)
	return pay, err
}

func (p instrumentedPG) Refund(ctx context.Context, r pgclient.RefundRequest) (pgclient.Refunded, error) {
	ctx, done := p.begin(ctx, "refund")
	res, err := p.next.Refund(ctx, r)
	done(err)
	return res, err
}

func (p instrumentedPG) DestroyBill(ctx context.Context, id string) error {
	ctx, done := p.begin(ctx, "destroy")
	err := p.next.DestroyBill(ctx, id)
	done(err)
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
