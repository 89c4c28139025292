package payflow_test

import (
	"testing"

	"github.com/payflow/payflow/payflow"
)

func BenchmarkDecide(b *testing.B) {
	c := payflow.Customer{MemberID: "m1", Phone: "+821012345678"}
	m := &payflow.StoredMethod{ID: "x", Status: payflow.MethodActive}
	for b.Loop() {
		_ = payflow.Decide(c, m)
	}
}

func BenchmarkValidateAndFingerprint(b *testing.B) {
	for b.Loop() {
		r := valid()
		if err := r.Validate(); err != nil {
			b.Fatal(err)
		}
		_ = r.Fingerprint()
	}
}
