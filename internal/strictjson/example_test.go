package strictjson_test

import (
	"errors"
	"fmt"

	"github.com/payflow/payflow/internal/strictjson"
)

func ExampleDecode() {
	var req struct {
		Amount   int64 `json:"amount"`
		Customer struct {
			Phone string `json:"phone"`
		} `json:"customer"`
	}
	for _, data := range []string{
		`{"amount":700,"customer":{"phone":"01012345678"},"producer_note":"extra fields are fine"}`,
		`{"amount":700,"AMOUNT":-7}`,
		`{"amount":700,"customer":{"phone":"01012345678","phone":"01099998888"}}`,
		`{"amount":"700"}`,
	} {
		err := strictjson.Decode([]byte(data), &req)
		var se *strictjson.Error
		switch {
		case err == nil:
			fmt.Println("ok:", req.Amount)
		case errors.As(err, &se):
			fmt.Printf("field %q %s (duplicate: %v)\n", se.Field, se.Reason, errors.Is(err, strictjson.ErrDuplicateKey))
		}
	}
	// Output:
	// ok: 700
	// field "amount" is spelled with other letter case; keys must match field names exactly (duplicate: false)
	// field "customer.phone" appears more than once (duplicate: true)
	// field "amount" must be a whole number in range (duplicate: false)
}
