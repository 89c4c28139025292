package payflow

import "errors"

// Method is how payflow asked the PG for the money.
type Method string

const (
	// MethodAutoPay charges a stored billing key at once (바로결제).
	MethodAutoPay Method = "auto_pay"
	// MethodKakaoBill sends a bill to the customer's phone by KakaoTalk
	// (청구서카카오톡발송); the customer pays it in KakaoTalk.
	MethodKakaoBill Method = "kakao_bill"
)

// FallbackReason says why a charge went out as a KakaoTalk bill instead of
// auto-pay. It is published as the charge.processed event's fallback_reason.
type FallbackReason string

const (
	FallbackNone           FallbackReason = ""
	FallbackNotMember      FallbackReason = "not_member"
	FallbackNoMethod       FallbackReason = "no_method"
	FallbackMethodDeclined FallbackReason = "method_declined"
	FallbackMethodExpired  FallbackReason = "method_expired"
	FallbackMethodLimit    FallbackReason = "method_limit"
	FallbackMethodInvalid  FallbackReason = "method_invalid"
)

// StoredMethod is what the decision needs to know of a member's registered
// payment method.
type StoredMethod struct {
	ID     string
	Status MethodStatus
}

// MethodStatus is the lifecycle of a registered payment method.
type MethodStatus string

const (
	MethodActive  MethodStatus = "active"
	MethodExpired MethodStatus = "expired" // the PG said the card expired: never auto-pay with it again
	MethodInvalid MethodStatus = "invalid" // the PG does not know the billing key
	MethodDeleted MethodStatus = "deleted"
)

// Usable reports whether auto-pay may be attempted with the method.
func (m StoredMethod) Usable() bool { return m.Status == MethodActive }

// Decision is the first way payflow tries to collect a charge.
type Decision struct {
	Method   Method
	Reason   FallbackReason // why not auto-pay; empty when Method is auto-pay
	MethodID string         // the stored method to charge, for auto-pay
}

// Decide picks auto-pay for a member with a usable default method and a
// KakaoTalk bill for everyone else. method is the member's default method, or
// nil when there is none.
func Decide(c Customer, method *StoredMethod) Decision {
	switch {
	case c.MemberID == "":
		return Decision{Method: MethodKakaoBill, Reason: FallbackNotMember}
	case method == nil:
		return Decision{Method: MethodKakaoBill, Reason: FallbackNoMethod}
	case method.Status == MethodExpired:
		return Decision{Method: MethodKakaoBill, Reason: FallbackMethodExpired}
	case !method.Usable():
		return Decision{Method: MethodKakaoBill, Reason: FallbackMethodInvalid}
	}
	return Decision{Method: MethodAutoPay, MethodID: method.ID}
}

// DeclineCode is the PG's reason for refusing an auto-pay with a method.
type DeclineCode string

const (
	DeclineGeneric DeclineCode = "declined"
	DeclineExpired DeclineCode = "expired"
	DeclineLimit   DeclineCode = "limit_exceeded"
	DeclineInvalid DeclineCode = "invalid_billing_key"
)

// AfterDecline says how payflow reacts when the PG refuses an auto-pay: the
// charge falls back to a KakaoTalk bill for the reason returned, and the
// method's new status is returned when the decline makes it unusable for
// future charges (an expired card stays expired; a limit does not).
func AfterDecline(code DeclineCode) (FallbackReason, MethodStatus) {
	switch code {
	case DeclineExpired:
		return FallbackMethodExpired, MethodExpired
	case DeclineInvalid:
		return FallbackMethodInvalid, MethodInvalid
	case DeclineLimit:
		return FallbackMethodLimit, MethodActive
	}
	return FallbackMethodDeclined, MethodActive
}

// ErrMethodUnusable is what a billing-key source answers when a stored
// method provably cannot be used: it was deleted, or its sealed key does
// not open under the key it names. It is a decline, a reason to fall back;
// any other error from a key source (a database blip, a key not rolled out
// yet) is transient and retried, never a reason to give a card up.
var ErrMethodUnusable = errors.New("payflow: stored payment method unusable")
