package payflow_test

import (
	"bytes"
	"testing"

	"github.com/payflow/payflow/payflow"
)

func TestDecide(t *testing.T) {
	member := payflow.Customer{MemberID: "m1"}
	cases := []struct {
		name   string
		c      payflow.Customer
		method *payflow.StoredMethod
		want   payflow.Decision
	}{
		{"not a member", payflow.Customer{}, nil, payflow.Decision{Method: payflow.MethodKakaoBill, Reason: payflow.FallbackNotMember}},
		{"non-member even with a method", payflow.Customer{}, &payflow.StoredMethod{ID: "x", Status: payflow.MethodActive}, payflow.Decision{Method: payflow.MethodKakaoBill, Reason: payflow.FallbackNotMember}},
		{"member without a method", member, nil, payflow.Decision{Method: payflow.MethodKakaoBill, Reason: payflow.FallbackNoMethod}},
		{"member with an expired card", member, &payflow.StoredMethod{ID: "x", Status: payflow.MethodExpired}, payflow.Decision{Method: payflow.MethodKakaoBill, Reason: payflow.FallbackMethodExpired}},
		{"member with an invalid key", member, &payflow.StoredMethod{ID: "x", Status: payflow.MethodInvalid}, payflow.Decision{Method: payflow.MethodKakaoBill, Reason: payflow.FallbackMethodInvalid}},
		{"member with a usable card", member, &payflow.StoredMethod{ID: "x", Status: payflow.MethodActive}, payflow.Decision{Method: payflow.MethodAutoPay, MethodID: "x"}},
	}
	for _, c := range cases {
		if got := payflow.Decide(c.c, c.method); got != c.want {
			t.Errorf("%s: %+v, want %+v", c.name, got, c.want)
		}
	}
}

func TestAfterDecline(t *testing.T) {
	for code, want := range map[payflow.DeclineCode][2]string{
		payflow.DeclineGeneric: {"method_declined", "active"},
		payflow.DeclineExpired: {"method_expired", "expired"},
		payflow.DeclineLimit:   {"method_limit", "active"},
		payflow.DeclineInvalid: {"method_invalid", "invalid"},
		"something new":        {"method_declined", "active"},
	} {
		r, s := payflow.AfterDecline(code)
		if string(r) != want[0] || string(s) != want[1] {
			t.Errorf("%s: %s/%s, want %v", code, r, s, want)
		}
	}
}

func valid() payflow.ChargeRequest {
	return payflow.ChargeRequest{MerchantID: "m", ChargeID: "c", Amount: 1000, Currency: "KRW", OrderName: "o",
		Customer: payflow.Customer{Phone: "010-1234-5678", Name: "Kim"}}
}

func TestChargeValidation(t *testing.T) {
	r := valid()
	if err := r.Validate(); err != nil || r.Customer.Phone != "+821012345678" {
		t.Fatalf("valid charge: %v, phone %s", err, r.Customer.Phone)
	}
	bad := map[string]func(*payflow.ChargeRequest){
		"zero amount":      func(r *payflow.ChargeRequest) { r.Amount = 0 },
		"negative amount":  func(r *payflow.ChargeRequest) { r.Amount = -1 },
		"over the maximum": func(r *payflow.ChargeRequest) { r.Amount = payflow.MaxAmount + 1 },
		"other currency":   func(r *payflow.ChargeRequest) { r.Currency = "USD" },
		"missing phone":    func(r *payflow.ChargeRequest) { r.Customer.Phone = "" },
		"landline":         func(r *payflow.ChargeRequest) { r.Customer.Phone = "02-123-4567" },
		"injection phone":  func(r *payflow.ChargeRequest) { r.Customer.Phone = "010'; DROP TABLE charges;--" },
		"missing charge":   func(r *payflow.ChargeRequest) { r.ChargeID = "" },
		"spaces in id":     func(r *payflow.ChargeRequest) { r.ChargeID = "a b" },
		"huge id":          func(r *payflow.ChargeRequest) { r.MerchantID = string(bytes.Repeat([]byte("m"), 200)) },
		"NUL in name":      func(r *payflow.ChargeRequest) { r.Customer.Name = "a\x00b" },
		"bad UTF-8":        func(r *payflow.ChargeRequest) { r.OrderName = "\xff\xfe" },
		"no order name":    func(r *payflow.ChargeRequest) { r.OrderName = " " },
	}
	for name, mutate := range bad {
		r := valid()
		mutate(&r)
		if err := r.Validate(); !payflow.IsValidationError(err) {
			t.Errorf("%s: err = %v, want a validation error", name, err)
		}
	}
	r = valid()
	r.Amount = payflow.MaxAmount
	r.OrderName = "주문 🎁 <script>"
	if err := r.Validate(); err != nil {
		t.Fatalf("the maximum amount and unicode text are valid: %v", err)
	}
}

func TestFingerprintSeparatesContent(t *testing.T) {
	a, b := valid(), valid()
	_ = a.Validate()
	_ = b.Validate()
	if !bytes.Equal(a.Fingerprint(), b.Fingerprint()) {
		t.Fatal("identical requests differ")
	}
	b.Amount++
	if bytes.Equal(a.Fingerprint(), b.Fingerprint()) {
		t.Fatal("a different amount has the same fingerprint")
	}
	c, d := valid(), valid()
	c.OrderName, c.Customer.Name = "ab", "c"
	d.OrderName, d.Customer.Name = "a", "bc"
	if bytes.Equal(c.Fingerprint(), d.Fingerprint()) {
		t.Fatal("shifting text between fields kept the fingerprint")
	}
}

func TestMaskPhone(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"+821012345678", "+********5678"},
		{"010-1234-5678", "***-****-5678"},
		{"010 1234 5678", "*** **** 5678"},
		{"12345", "*2345"},
		{"1234", "****"}, // four digits or fewer: none shown
		{"123", "***"},
		{"", ""},
		{"tel:010abc5678", "**********5678"}, // letters are hidden too
		{"전화 01012345678", "** *******5678"},
		{"\xff01012345678", "*" + "*******5678"},
	} {
		if got := payflow.MaskPhone(c.in); got != c.want {
			t.Errorf("MaskPhone(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func FuzzChargeValidate(f *testing.F) {
	f.Add("m", "c", int64(1000), "KRW", "o", "010-1234-5678")
	f.Add("", "", int64(-1), "", "", "+")
	f.Fuzz(func(t *testing.T, merchant, charge string, amount int64, currency, order, phone string) {
		r := payflow.ChargeRequest{MerchantID: merchant, ChargeID: charge, Amount: amount, Currency: currency, OrderName: order,
			Customer: payflow.Customer{Phone: phone}}
		if r.Validate() == nil && (r.Amount <= 0 || r.Amount > payflow.MaxAmount || r.Customer.Phone[0] != '+') {
			t.Fatalf("accepted %+v", r)
		}
	})
}
