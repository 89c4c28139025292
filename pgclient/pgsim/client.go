package pgsim

import (
	"context"
	"strings"

	"github.com/payflow/payflow/pgclient"
)

// InProcessBase is the base of the pay URLs the in-process client hands out
// when Config.PublicURL is empty: no request came in whose host they could
// be on.
const InProcessBase = "http://pgsim.invalid"

// Client is a pgclient.Client that calls the simulator in the same process,
// without HTTP: on the same bills and ledger, with the same latency, faults
// and call counts as the Handler, and the answers and error kinds
// pgclient.HTTPClient would get from it (the reference protocol, whatever
// Config.Protocol says). For tests whose subject is not the wire.
type Client struct {
	sim  *Sim
	base string
}

var _ pgclient.Client = (*Client)(nil)

// Client returns an in-process client of the simulator. Pay URLs are on
// Config.PublicURL, else on InProcessBase.
func (s *Sim) Client() *Client {
	base := strings.TrimSuffix(s.cfg.PublicURL, "/")
	if base == "" {
		base = InProcessBase
	}
	return &Client{sim: s, base: base}
}

// do runs one operation as if it had arrived over HTTP, and classifies its
// failure as the HTTP adapter would.
func (c *Client) do(ctx context.Context, op string, exec func() *apiError) error {
	if err := ctx.Err(); err != nil {
		// A request that never left: it did not arrive either.
		return &pgclient.Error{Op: op, Kind: pgclient.KindUnknown, Message: err.Error()}
	}
	c.sim.count(op)
	aerr := c.sim.perform(ctx, op, exec)
	switch {
	case aerr == nil:
		return nil
	case aerr == errCallerLeft:
		return &pgclient.Error{Op: op, Kind: pgclient.KindUnknown, Message: context.Cause(ctx).Error()}
	}
	e := &pgclient.Error{Op: op, Kind: aerr.kind, Code: aerr.code, Message: aerr.msg}
	if unavailable(aerr) {
		e.RetryAfter = c.sim.retryAfter()
	}
	return e
}

// call is do for an operation with a result.
func call[T any](ctx context.Context, c *Client, op string, exec func() (T, *apiError)) (T, error) {
	var out T
	err := c.do(ctx, op, func() (aerr *apiError) {
		out, aerr = exec()
		return aerr
	})
	if err != nil {
		var zero T
		return zero, err
	}
	return out, nil
}

func (c *Client) AutoPay(ctx context.Context, req pgclient.AutoPayRequest) (pgclient.Accepted, error) {
	return call(ctx, c, OpAutoPay, func() (pgclient.Accepted, *apiError) { return c.sim.placeAutoPay(req, "", true, false) })
}

func (c *Client) SendKakaoBill(ctx context.Context, req pgclient.KakaoBillRequest) (pgclient.Accepted, error) {
	return call(ctx, c, OpKakaoBill, func() (pgclient.Accepted, *apiError) { return c.sim.placeKakao(req, "") })
}

func (c *Client) BillURL(ctx context.Context, billID string) (pgclient.BillURL, error) {
	return call(ctx, c, OpBillURL, func() (pgclient.BillURL, *apiError) { return c.sim.issueURL(billID, c.base) })
}

func (c *Client) LookupPayment(ctx context.Context, billID string) (pgclient.Payment, error) {
	return call(ctx, c, OpLookup, func() (pgclient.Payment, *apiError) { return c.sim.lookupBill(billID) })
}

func (c *Client) Refund(ctx context.Context, req pgclient.RefundRequest) (pgclient.Refunded, error) {
	return call(ctx, c, OpRefund, func() (pgclient.Refunded, *apiError) { return c.sim.refundBill(req) })
}

func (c *Client) DestroyBill(ctx context.Context, billID string) error {
	return c.do(ctx, OpDestroy, func() *apiError { return c.sim.destroyBill(billID) })
}
