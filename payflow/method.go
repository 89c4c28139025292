package payflow

import "time"

// PaymentMethod is a member's registered payment method (the stored card;
// Method is how a bill collects). BillingKeyEnc is the billing key as
// package vault sealed it: the store never sees the key itself, and a
// deleted method keeps no trace of it.
type PaymentMethod struct {
	ID            string // a UUID, chosen by the caller: the key is sealed to it
	MemberID      string
	Label         string // what users see, already masked
	Default       bool
	Status        MethodStatus
	BillingKeyEnc []byte
	CreatedAt     time.Time
	UpdatedAt     time.Time
}
