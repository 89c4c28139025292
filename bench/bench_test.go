package bench

import (
	"encoding/json"
	"testing"

	"github.com/payflow/payflow/payflow"
)

// Every customer of a 20,000-customer run gets a valid phone of its own: a
// generated request the domain rejects would measure the rejection path.
func TestEveryGeneratedPhoneIsValid(t *testing.T) {
	w := W1
	w.Customers = 20000
	seen := map[string]int{}
	for i := 0; i < w.Customers; i++ {
		var ev struct {
			Data struct {
				Customer struct{ Phone string } `json:"customer"`
			} `json:"data"`
		}
		if err := json.Unmarshal(chargeEvent(w, i, "c"), &ev); err != nil {
			t.Fatal(err)
		}
		p, err := payflow.NormalizePhone(ev.Data.Customer.Phone)
		if err != nil {
			t.Fatalf("customer %d: phone %q: %v", i, ev.Data.Customer.Phone, err)
		}
		if j, dup := seen[p]; dup {
			t.Fatalf("customers %d and %d share the phone %s", j, i, p)
		}
		seen[p] = i
	}
}
