package payflow_test

import (
	"strings"
	"testing"

	"github.com/payflow/payflow/payflow"
)

// TestValidID pins the one id rule every entry point applies: the API, the
// worker, the webhook receiver and the request signature keys.
func TestValidID(t *testing.T) {
	max := strings.Repeat("a", payflow.MaxIDLen)
	for _, c := range []struct {
		name string
		id   string
		ok   bool
	}{
		{"plain", "charge-1", true},
		{"a UUID", "0193a3c4-7f00-7a3b-8c1d-2e3f4a5b6c7d", true},
		{"lowest printable (!)", "!", true},
		{"highest printable (~)", "~", true},
		{"every printable ASCII byte", printableASCII(), true},
		{"exactly MaxIDLen bytes", max, true},
		{"MaxIDLen + 1 bytes", max + "a", false},
		{"empty", "", false},
		{"space", "a b", false},
		{"leading space", " a", false},
		{"tab", "a\tb", false},
		{"newline", "a\nb", false},
		{"NUL", "a\x00b", false},
		{"0x1F", "a\x1fb", false},
		{"DEL (0x7F)", "a\x7fb", false},
		{"no-break space U+00A0", "a\u00a0b", false},
		{"C1 control U+0085", "a\u0085b", false},
		{"ideographic space U+3000", "a\u3000b", false},
		{"zero-width space U+200B", "a\u200bb", false},
		{"Hangul", "주문1", false},
		{"Cyrillic look-alike", "\u0441harge", false},
		{"invalid UTF-8", "a\xffb", false},
		{"lone 0xA0 byte", "a\xa0b", false},
	} {
		err := payflow.ValidID(c.id)
		if (err == nil) != c.ok {
			t.Errorf("%s: ValidID = %v, want ok=%v", c.name, err, c.ok)
		}
		if err != nil && c.id != "" && strings.Contains(err.Error(), c.id) {
			t.Errorf("%s: the error %q quotes the id", c.name, err)
		}
	}
}

func printableASCII() string {
	var b strings.Builder
	for c := byte(0x21); c <= 0x7e; c++ {
		b.WriteByte(c)
	}
	return b.String()
}

// Every id of every request kind follows ValidID.
func TestRequestsApplyValidID(t *testing.T) {
	for _, id := range []string{"a\u00a0b", "주문", "a\x7f", strings.Repeat("x", payflow.MaxIDLen+1)} {
		r := valid()
		r.ChargeID = id
		if err := r.Validate(); !payflow.IsValidationError(err) {
			t.Errorf("charge with charge_id %q: %v", id, err)
		}
		r = valid()
		r.Customer.MemberID = id
		if err := r.Validate(); !payflow.IsValidationError(err) {
			t.Errorf("charge with member_id %q: %v", id, err)
		}
		rf := payflow.RefundRequest{MerchantID: "m", ChargeID: "c", RefundID: id, Amount: 1}
		if err := rf.Validate(); !payflow.IsValidationError(err) {
			t.Errorf("refund with refund_id %q: %v", id, err)
		}
		rp := payflow.RepayRequest{MerchantID: "m", ChargeID: "c", RepayID: id}
		if err := rp.Validate(); !payflow.IsValidationError(err) {
			t.Errorf("repay with repay_id %q: %v", id, err)
		}
		cn := payflow.CancelRequest{MerchantID: id, ChargeID: "c"}
		if err := cn.Validate(); !payflow.IsValidationError(err) {
			t.Errorf("cancel with merchant_id %q: %v", id, err)
		}
	}
	r := valid()
	r.ChargeID = strings.Repeat("x", payflow.MaxIDLen)
	if err := r.Validate(); err != nil {
		t.Errorf("a charge id of MaxIDLen bytes: %v", err)
	}
}
