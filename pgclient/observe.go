package pgclient

import "context"

// Observer hears every call a Client makes to the PG. As every payflow
// observer, a method that returns a context and a func starts something (a
// span, a clock): the call runs with that context, and the func is called
// once, with the call's error.
type Observer interface {
	// Call starts a call of op: auto_pay, kakao_bill, bill_url, lookup,
	// refund or destroy.
	Call(ctx context.Context, op string) (_ context.Context, end func(error))
}

// Observed returns c with each of its calls told to o, without the adapter
// or its caller knowing. It keeps c's capabilities.
func Observed(c Client, o Observer) Client { return observed{next: c, o: o} }

type observed struct {
	next Client
	o    Observer
}

// Capabilities are the adapter's: the worker checks them before it calls.
func (p observed) Capabilities() Capabilities { return CapabilitiesOf(p.next) }

func (p observed) AutoPay(ctx context.Context, r AutoPayRequest) (Accepted, error) {
	ctx, end := p.o.Call(ctx, "auto_pay")
	a, err := p.next.AutoPay(ctx, r)
	end(err)
	return a, err
}

func (p observed) SendKakaoBill(ctx context.Context, r KakaoBillRequest) (Accepted, error) {
	ctx, end := p.o.Call(ctx, "kakao_bill")
	a, err := p.next.SendKakaoBill(ctx, r)
	end(err)
	return a, err
}

func (p observed) BillURL(ctx context.Context, id string) (BillURL, error) {
	ctx, end := p.o.Call(ctx, "bill_url")
	u, err := p.next.BillURL(ctx, id)
	end(err)
	return u, err
}

func (p observed) LookupPayment(ctx context.Context, id string) (Payment, error) {
	ctx, end := p.o.Call(ctx, "lookup")
	pay, err := p.next.LookupPayment(ctx, id)
	end(err)
	return pay, err
}

func (p observed) Refund(ctx context.Context, r RefundRequest) (Refunded, error) {
	ctx, end := p.o.Call(ctx, "refund")
	res, err := p.next.Refund(ctx, r)
	end(err)
	return res, err
}

func (p observed) DestroyBill(ctx context.Context, id string) error {
	ctx, end := p.o.Call(ctx, "destroy")
	err := p.next.DestroyBill(ctx, id)
	end(err)
	return err
}
