package pgclient

import (
	"context"
	"errors"
	"strings"
	"unicode/utf8"
)

// Sanitized returns c with every string of its answers and errors made fit
// to store, log and publish, whatever the PG sent: valid UTF-8 (other bytes
// become U+FFFD), no NUL (Postgres refuses it in text; it becomes U+FFFD
// too), and at most MaxText bytes. It keeps c's capabilities.
//
// A PG's answer is its word, not payflow's: a bill the PG accepted with a
// transaction id Postgres cannot hold would otherwise never be recorded, its
// charge left placing for ever and its payment refused at settlement. The
// answer is kept, made storable, as every field of it is logged and
// published the way it is stored.
func Sanitized(c Client) Client { return sanitized{next: c} }

// MaxText is the longest string Sanitized passes on, in bytes; a longer one
// is cut at a rune boundary and ends in "…".
const MaxText = 2048

type sanitized struct{ next Client }

func (p sanitized) Capabilities() Capabilities { return CapabilitiesOf(p.next) }

func (p sanitized) AutoPay(ctx context.Context, r AutoPayRequest) (Accepted, error) {
	a, err := p.next.AutoPay(ctx, r)
	return a.sanitize(), sanitizeErr(err)
}

func (p sanitized) SendKakaoBill(ctx context.Context, r KakaoBillRequest) (Accepted, error) {
	a, err := p.next.SendKakaoBill(ctx, r)
	return a.sanitize(), sanitizeErr(err)
}

func (p sanitized) BillURL(ctx context.Context, id string) (BillURL, error) {
	u, err := p.next.BillURL(ctx, id)
	u.URL = Text(u.URL)
	return u, sanitizeErr(err)
}

func (p sanitized) LookupPayment(ctx context.Context, id string) (Payment, error) {
	pay, err := p.next.LookupPayment(ctx, id)
	pay.BillID, pay.Method, pay.Status = Text(pay.BillID), Text(pay.Method), PaymentStatus(Text(string(pay.Status)))
	pay.PGTxID, pay.Decline = Text(pay.PGTxID), Text(pay.Decline)
	return pay, sanitizeErr(err)
}

func (p sanitized) Refund(ctx context.Context, r RefundRequest) (Refunded, error) {
	res, err := p.next.Refund(ctx, r)
	res.RefundID, res.PGTxID = Text(res.RefundID), Text(res.PGTxID)
	return res, sanitizeErr(err)
}

func (p sanitized) DestroyBill(ctx context.Context, id string) error {
	return sanitizeErr(p.next.DestroyBill(ctx, id))
}

func (a Accepted) sanitize() Accepted {
	a.BillID, a.PGTxID, a.URL = Text(a.BillID), Text(a.PGTxID), Text(a.URL)
	return a
}

// sanitizeErr cleans the code and message of the *Error in err's chain,
// in place; an error already clean is not written to (a shared one may be
// read concurrently).
func sanitizeErr(err error) error {
	var e *Error
	if !errors.As(err, &e) {
		return err
	}
	if c := Text(e.Code); c != e.Code {
		e.Code = c
	}
	if m := Text(e.Message); m != e.Message {
		e.Message = m
	}
	return err
}

// Text makes s fit to store, log and publish as Sanitized does.
func Text(s string) string {
	if len(s) <= MaxText && utf8.ValidString(s) && strings.IndexByte(s, 0) < 0 {
		return s
	}
	s = strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "\uFFFD")
	if len(s) <= MaxText {
		return s
	}
	cut := MaxText - len("…")
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}
