package payssam

import (
	"crypto/sha256"
	"encoding/hex"
)

// Hash is the "hash" field (통신 암호 키) of a PaySSam request: SHA-256 over
// the UTF-8 bytes of "billId,phone,price" when the request carries a phone,
// else of "billId,price", as lower-case hex. The strings are exactly those
// sent in the body: the PaySSam bill id, the phone as digits, the price as
// decimal digits. Whether a request carries a phone is the request type's
// rule (see the hash* functions beside each request in wire.go): /bill
// does, /bill/cancel and /bill/destroy do not, even for a bill created with a
// phone (PaySSam answers VALIDATION_002 to a hash with it).
//
// It is an integrity check, not a signature: no secret goes into it.
func Hash(billID, phone, price string) string {
	s := billID + "," + price
	if phone != "" {
		s = billID + "," + phone + "," + price
	}
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}
