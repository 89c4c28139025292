package payflow

import (
	"errors"
	"fmt"
)

// MaxIDLen bounds every identifier payflow accepts: merchant, charge,
// refund, re-payment, member and bill ids. Identifiers become database keys,
// Kafka keys, URL path segments and log fields; unbounded ones are a denial
// of service.
const MaxIDLen = 128

// ValidID is payflow's one rule for an identifier given to it from outside
// (an event, a URL, a PG callback, configuration): 1 to MaxIDLen bytes of
// printable ASCII without spaces (0x21 to 0x7E). Nothing else is allowed, so
// an id means the same to Postgres, Kafka, a URL and a log reader: no
// Unicode space (U+00A0), no look-alike letters, no control characters.
// The error says what is wrong and never quotes the id.
func ValidID(v string) error {
	switch {
	case v == "":
		return errIDRequired
	case len(v) > MaxIDLen:
		return errIDTooLong
	}
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < 0x21 || c > 0x7e {
			return errIDChars
		}
	}
	return nil
}

var (
	errIDRequired = errors.New("is required")
	errIDTooLong  = fmt.Errorf("is longer than %d bytes", MaxIDLen)
	errIDChars    = errors.New("must be printable ASCII without spaces")
)
