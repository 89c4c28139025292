package consumer

import (
	"errors"
	"fmt"
	"testing"
)

func TestRedactMasksWhatTheMessageHolds(t *testing.T) {
	errBase := errors.New("base")
	value := []byte(`{"id":"e-1","amount":15000,"customer":{"phone":"010-1234-5678","name":"Hong Gildong"},
		"billing_key":"bk_live_7Hq2ZpL9xW","tags":["shop",12345678901,true,null],"merchant_id":"m"}`)
	for _, c := range []struct{ in, want string }{
		{"charge_id is missing", "charge_id is missing"},                                                 // keys are the schema, not data
		{"customer.phone: bad value", "customer.phone: bad value"},                                       // so are paths
		{`bad phone "010-1234-5678"`, `bad phone "***"`},                                                 // a whole string
		{"key bk_live_7Hq2ZpL9xW refused", "key *** refused"},                                            // a bare one
		{"name Gildong, Hong", "name ***, ***"},                                                          // its words
		{"amount 15000 over the limit", "amount *** over the limit"},                                     // numbers
		{"id 12345678901 or x12345678901y", "id *** or x***y"},                                           // long values anywhere
		{"shopping at the shop", "shopping at the ***"},                                                  // short ones only as words
		{"e-1 m (SQLSTATE 22001)", "e-1 m (SQLSTATE 22001)"},                                             // too short to tell from words
		{"ERROR: null value in column (SQLSTATE 23502)", "ERROR: null value in column (SQLSTATE 23502)"}, // true, null: literals
	} {
		got := redact(fmt.Errorf("%w: %s", errBase, c.in), value)
		if want := "base: " + c.want; got.Error() != want {
			t.Errorf("redact(%q) = %q, want %q", c.in, got.Error(), want)
		}
		if !errors.Is(got, errBase) {
			t.Errorf("redact(%q) lost the error chain", c.in)
		}
	}
	// Not JSON: every run of characters between spaces and punctuation.
	got := redact(errors.New(`bad "01012345678" near bk_live_7Hq2ZpL9xW`), []byte(`phone=01012345678;key:"bk_live_7Hq2ZpL9xW"`))
	if got.Error() != `bad "***" near ***` {
		t.Errorf("not JSON: %q", got.Error())
	}
	if redact(nil, value) != nil {
		t.Error("redact(nil) is not nil")
	}
	plain := errors.New("database unavailable")
	if redact(plain, value) != plain {
		t.Error("an error with nothing to mask is not returned as it is")
	}
}
