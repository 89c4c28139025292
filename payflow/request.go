package payflow

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/payflow/payflow/internal/mutation"
)

// MaxAmount is the largest amount, in KRW, payflow accepts for one charge or
// refund. Amounts are whole won: KRW has no minor unit.
const MaxAmount int64 = 100_000_000

// Currency is the only currency payflow settles.
const Currency = "KRW"

// maxTextLen bounds free text (order names, reasons, customer names).
const maxTextLen = 512

// Customer is the consumer a merchant wants to charge.
type Customer struct {
	MemberID string // empty for a consumer who is not a platform-app member
	Phone    string // normalised to E.164 by Validate
	Name     string
}

// ChargeRequest asks payflow to collect Amount from Customer.
type ChargeRequest struct {
	MerchantID string
	ChargeID   string
	Amount     int64
	Currency   string
	OrderName  string
	Customer   Customer
}

// RefundRequest asks payflow to return Amount of a paid charge.
type RefundRequest struct {
	MerchantID string
	ChargeID   string
	RefundID   string
	Amount     int64
	Reason     string
}

// RepayRequest asks payflow to refund a charge's payment and bill the
// customer again under a new bill id. Amount 0 means the original amount.
type RepayRequest struct {
	MerchantID string
	ChargeID   string
	RepayID    string
	Amount     int64
}

// CancelRequest asks payflow to destroy a charge's unpaid bill.
type CancelRequest struct {
	MerchantID string
	ChargeID   string
	Reason     string
}

// ValidationError says why a well-formed request cannot be executed. Its
// message is safe to publish: it never repeats the offending value.
type ValidationError struct {
	Field  string
	Reason string
}

func (e *ValidationError) Error() string { return e.Field + ": " + e.Reason }

// IsValidationError reports whether err is (or wraps) a ValidationError.
func IsValidationError(err error) bool {
	var v *ValidationError
	return errors.As(err, &v)
}

func invalid(field, reason string) error { return &ValidationError{Field: field, Reason: reason} }

// Validate checks the charge and normalises the phone number in place.
func (r *ChargeRequest) Validate() error {
	if err := validID("merchant_id", r.MerchantID); err != nil {
		return err
	}
	if err := validID("charge_id", r.ChargeID); err != nil {
		return err
	}
	if err := ValidAmount("amount", r.Amount); err != nil {
		return err
	}
	if r.Currency != Currency {
		return invalid("currency", "must be KRW")
	}
	if err := validText("order_name", r.OrderName, true); err != nil {
		return err
	}
	if r.Customer.MemberID != "" {
		if err := validID("customer.member_id", r.Customer.MemberID); err != nil {
			return err
		}
	}
	if err := validText("customer.name", r.Customer.Name, false); err != nil {
		return err
	}
	phone, err := NormalizePhone(r.Customer.Phone)
	if err != nil {
		return err
	}
	r.Customer.Phone = phone
	return nil
}

// RepayRefundPrefix starts the refund id that a re-payment's refund step is
// published under ("repay:<repay_id>"); merchants' refund ids may not start
// with it, so the two can never be mistaken for each other downstream.
const RepayRefundPrefix = "repay:"

// Validate checks the refund request.
func (r *RefundRequest) Validate() error {
	for _, f := range []struct{ name, v string }{{"merchant_id", r.MerchantID}, {"charge_id", r.ChargeID}, {"refund_id", r.RefundID}} {
		if err := validID(f.name, f.v); err != nil {
			return err
		}
	}
	if strings.HasPrefix(r.RefundID, RepayRefundPrefix) && !mutation.On("repay-prefix") {
		return &ValidationError{Field: "refund_id", Reason: "may not start with " + strconv.Quote(RepayRefundPrefix) + " (the refund ids of re-payments)"}
	}
	if err := ValidAmount("amount", r.Amount); err != nil {
		return err
	}
	return validText("reason", r.Reason, false)
}

// Validate checks the re-payment request. A zero amount is allowed and means
// "the original amount".
func (r *RepayRequest) Validate() error {
	for _, f := range []struct{ name, v string }{{"merchant_id", r.MerchantID}, {"charge_id", r.ChargeID}, {"repay_id", r.RepayID}} {
		if err := validID(f.name, f.v); err != nil {
			return err
		}
	}
	if r.Amount == 0 {
		return nil
	}
	return ValidAmount("amount", r.Amount)
}

// Validate checks the cancel request.
func (r *CancelRequest) Validate() error {
	if err := validID("merchant_id", r.MerchantID); err != nil {
		return err
	}
	if err := validID("charge_id", r.ChargeID); err != nil {
		return err
	}
	return validText("reason", r.Reason, false)
}

// ValidAmount enforces the money rule shared by charges and refunds:
// a positive whole number of won, at most MaxAmount.
func ValidAmount(field string, amount int64) error {
	switch {
	case amount <= 0:
		return invalid(field, "must be greater than 0")
	case amount > MaxAmount:
		return invalid(field, fmt.Sprintf("must be at most %d", MaxAmount))
	}
	return nil
}

func validID(field, v string) error {
	if err := ValidID(v); err != nil {
		return invalid(field, err.Error())
	}
	return nil
}

func validText(field, v string, required bool) error {
	switch {
	case required && strings.TrimSpace(v) == "":
		return invalid(field, "is required")
	case len(v) > maxTextLen:
		return invalid(field, fmt.Sprintf("is longer than %d bytes", maxTextLen))
	case !utf8.ValidString(v):
		return invalid(field, "is not valid UTF-8")
	case strings.ContainsRune(v, 0):
		return invalid(field, "contains a NUL character")
	}
	return nil
}

// Fingerprint identifies the content of a charge request, so that the same
// (merchant_id, charge_id) sent again with different content is told apart
// from a redelivery. Call it after Validate (the phone is normalised).
func (r ChargeRequest) Fingerprint() []byte {
	return fingerprint("charge", r.MerchantID, r.ChargeID, strconv.FormatInt(r.Amount, 10), r.Currency,
		r.OrderName, r.Customer.MemberID, r.Customer.Phone, r.Customer.Name)
}

// Fingerprint identifies the content of a refund request.
func (r RefundRequest) Fingerprint() []byte {
	return fingerprint("refund", r.MerchantID, r.ChargeID, r.RefundID, strconv.FormatInt(r.Amount, 10), r.Reason)
}

// Fingerprint identifies the content of a re-payment request.
func (r RepayRequest) Fingerprint() []byte {
	return fingerprint("repay", r.MerchantID, r.ChargeID, r.RepayID, strconv.FormatInt(r.Amount, 10))
}

func fingerprint(parts ...string) []byte {
	h := sha256.New()
	for _, p := range parts {
		// Length-prefixed, so ("ab","c") and ("a","bc") differ.
		h.Write([]byte(strconv.Itoa(len(p))))
		h.Write([]byte{':'})
		h.Write([]byte(p))
	}
	return h.Sum(nil)
}
