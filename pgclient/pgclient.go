// Package pgclient owns payflow's side of the payment gateway (PG): the Client
// interface with the six PG operations of the seed design (바로결제,
// 청구서카카오톡발송, 청구서URL조회, 결제정보조회, 환불요청, 청구서파기), the
// error classification retries depend on, and the HTTP adapter. The simulator
// lives in pgsim; the behavioural suite every adapter must pass in
// pgclienttest.
package pgclient

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Client is a payment gateway. Every mutating operation is keyed by an id
// payflow stores before it calls (bill id, refund id), so that a call whose
// outcome is unknown can be looked up instead of repeated.
type Client interface {
	// AutoPay charges a stored billing key at once (바로결제). A refused
	// method is an *Error of kind KindDeclined with a Decline code.
	AutoPay(ctx context.Context, req AutoPayRequest) (Accepted, error)
	// SendKakaoBill sends a bill to the customer's phone (청구서카카오톡발송).
	SendKakaoBill(ctx context.Context, req KakaoBillRequest) (Accepted, error)
	// BillURL returns the URL where the customer pays a bill (청구서URL조회).
	BillURL(ctx context.Context, billID string) (BillURL, error)
	// LookupPayment returns what the PG holds for a bill (결제정보조회). A bill
	// the PG never received is an *Error of kind KindNotFound.
	LookupPayment(ctx context.Context, billID string) (Payment, error)
	// Refund returns money of a paid bill (환불요청). Repeating a refund id
	// returns the first answer and refunds nothing more.
	Refund(ctx context.Context, req RefundRequest) (Refunded, error)
	// DestroyBill cancels an unpaid bill (청구서파기).
	DestroyBill(ctx context.Context, billID string) error
}

// AutoPayRequest charges BillingKey for Amount under BillID.
type AutoPayRequest struct {
	BillID     string `json:"bill_id"`
	MerchantID string `json:"merchant_id"`
	BillingKey string `json:"billing_key"`
	Amount     int64  `json:"amount"`
	OrderName  string `json:"order_name"`
}

// KakaoBillRequest sends a bill of Amount to Phone (E.164) under BillID.
type KakaoBillRequest struct {
	BillID     string `json:"bill_id"`
	MerchantID string `json:"merchant_id"`
	Phone      string `json:"phone"`
	Name       string `json:"name"`
	Amount     int64  `json:"amount"`
	OrderName  string `json:"order_name"`
}

// Accepted is the PG's answer to a bill it took on. The final result of the
// bill arrives later by webhook or by LookupPayment.
type Accepted struct {
	BillID string `json:"bill_id"`
	PGTxID string `json:"pg_tx_id"`
	// URL is the bill's pay URL when the PG gives it at creation, for a PG
	// that offers no way to ask for it later (BillURL may then answer only
	// from what was stored): store it with the bill. Empty otherwise.
	URL string `json:"url,omitempty"`
	// URLExpiresAt is when URL stops being payable, when the PG says so;
	// zero otherwise. Not part of payflow's own protocol.
	URLExpiresAt time.Time `json:"-"`
}

// BillURL is where the customer pays a bill, valid until ExpiresAt.
type BillURL struct {
	URL       string    `json:"url"`
	ExpiresAt time.Time `json:"expires_at"`
}

// PaymentStatus is a bill's status as the PG reports it.
type PaymentStatus string

const (
	// StatusRequested: the PG holds the bill and has no final result yet.
	StatusRequested PaymentStatus = "requested"
	StatusPaid      PaymentStatus = "paid"
	StatusFailed    PaymentStatus = "failed"
	StatusCancelled PaymentStatus = "cancelled"
	StatusExpired   PaymentStatus = "expired"
)

// Payment is what the PG holds for a bill.
type Payment struct {
	BillID   string        `json:"bill_id"`
	Method   string        `json:"method"` // "auto_pay" or "kakao_bill"
	Status   PaymentStatus `json:"status"`
	Amount   int64         `json:"amount"`
	Refunded int64         `json:"refunded"`
	PGTxID   string        `json:"pg_tx_id"`
	// Decline is set when an auto-pay was refused: the bill exists at the PG
	// with status failed and this code.
	Decline string `json:"decline,omitempty"`
}

// RefundRequest returns Amount of BillID; RefundID makes it idempotent.
type RefundRequest struct {
	BillID   string `json:"bill_id"`
	RefundID string `json:"refund_id"`
	Amount   int64  `json:"amount"`
	Reason   string `json:"reason"`
	// PaidAmount, when not zero, is the bill's paid amount as payflow
	// recorded it. An adapter whose PG cancels only in full (Capabilities)
	// refuses a refund of another amount with it, without calling the PG.
	// It is not part of payflow's own protocol.
	PaidAmount int64 `json:"-"`
}

// Refunded is the PG's answer to a refund.
type Refunded struct {
	RefundID      string `json:"refund_id"`
	Amount        int64  `json:"amount"`
	RefundedTotal int64  `json:"refunded_total"`
	PGTxID        string `json:"pg_tx_id"`
}

// Kind classifies a PG error by what payflow may do about it.
type Kind string

const (
	// KindTransient: the PG did not act (connection refused, 429, the PG's
	// own 503 "unavailable" answer). Safe to retry.
	KindTransient Kind = "transient"
	// KindUnknown: the request may or may not have been executed (timeout,
	// connection reset after sending, 5xx including a proxy's bare 503). Look
	// the bill up before retrying.
	KindUnknown Kind = "unknown"
	// KindDeclined: the PG refused the payment method. Not retried; the charge
	// falls back to a KakaoTalk bill.
	KindDeclined Kind = "declined"
	// KindInvalid: the PG rejected the request itself. Never retried.
	KindInvalid Kind = "invalid"
	// KindNotFound: the PG has no such bill or refund.
	KindNotFound Kind = "not_found"
	// KindDuplicate: the bill or refund id was already used at the PG. The
	// original outcome must be looked up.
	KindDuplicate Kind = "duplicate"
	// KindConflict: the operation does not fit the bill's state (refund of
	// an unpaid bill, destroying a paid one, refund above the paid amount).
	KindConflict Kind = "conflict"
)

// Error is a classified PG failure.
type Error struct {
	Op         string // the operation, e.g. "auto_pay"
	Kind       Kind
	Code       string // the PG's code, e.g. a decline code
	Message    string
	RetryAfter time.Duration // honoured by retries when the PG asks for it
}

func (e *Error) Error() string {
	if e.Code != "" {
		return fmt.Sprintf("pg %s: %s (%s): %s", e.Op, e.Kind, e.Code, e.Message)
	}
	return fmt.Sprintf("pg %s: %s: %s", e.Op, e.Kind, e.Message)
}

// KindOf returns the kind of a PG error; errors that are not *Error (a
// cancelled context, a bug) are KindUnknown, the conservative answer.
func KindOf(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return KindUnknown
}

// Retriable reports whether the operation may be tried again (after a
// lookup, for KindUnknown).
func Retriable(err error) bool {
	k := KindOf(err)
	return k == KindTransient || k == KindUnknown
}
