package payssam

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
)

// The PaySSam partner API v2 as the adapter speaks it: paths, request and
// answer shapes, and the hash rule of each request. Requests are structs, so
// that their JSON has a fixed field order (testdata holds the golden
// requests). The simulator (pgsim, Protocol "payssam") decodes the same
// shapes: both sides share this file's exported types.
//
// Every shape that the digest of the API marks uncertain says so where it is
// defined, prefixed ASSUMPTION; docs/pg/payssam.md lists them.

// Paths, relative to the configured base URL (the partner API root, e.g.
// the sandbox's https://sandbox.paymint.co.kr/partner).
const (
	PathBill    = "/bill"
	PathRead    = "/bill/read"
	PathCancel  = "/bill/cancel"
	PathDestroy = "/bill/destroy"
	// PathRP is "RP 청구서 결제", the charge of a stored (RP) payment method.
	// ASSUMPTION(rp): only its path and name are documented; see RPBill.
	PathRP = "/bill/rp"
)

// Send types of POST /bill.
const (
	SendTalk = "TALK" // PaySSam sends a KakaoTalk 알림톡 with the pay link
	SendURL  = "URL"  // PaySSam only returns the pay link
)

// Bill states (apprState) of /bill/read.
const (
	StatePaid      = "F" // 결제완료: paid
	StateUnpaid    = "W" // 미결제: waiting for the customer
	StateCancelled = "C" // 취소: a paid bill cancelled (승인취소), i.e. refunded in full
	StateDestroyed = "D" // 파기: an unpaid bill voided
)

// PayTypeRP is the apprPayType of a payment by a stored method.
// ASSUMPTION(rp-paytype): seen in one third-party v1 type file only; the
// adapter reports a bill whose apprPayType is CARD_RP as an auto-pay and
// every other one as a KakaoTalk bill (PaySSam's read answer does not say
// how a bill was created).
const PayTypeRP = "CARD_RP"

// CodeOK is the code of every successful answer.
const CodeOK = "0000"

// Envelope is every request body: the partner's credentials and the store
// (sub-business) in the body, the operation's data under "bill". There is
// no authentication header.
type Envelope[T any] struct {
	APIKey   string `json:"apiKey"`
	Member   string `json:"member"`
	Merchant string `json:"merchant"`
	Bill     T      `json:"bill"`
}

// BillRequest is POST /bill: create a bill and send it (TALK) or only return
// its link (URL). Its hash has 3 fields: the request carries a phone.
type BillRequest struct {
	BillID      string `json:"billId"`
	SendType    string `json:"sendType"`
	ProductName string `json:"productName"`
	Price       string `json:"price"`
	MemberName  string `json:"memberName"`
	Phone       string `json:"phone"`
	Message     string `json:"message,omitempty"`
	BillIssuer  string `json:"billIssuer,omitempty"`
	ExpireDt    string `json:"expireDt,omitempty"`
	Hash        string `json:"hash"`
	CallbackURL string `json:"callbackUrl"`
}

// WantHash is the hash the request must carry.
func (r BillRequest) WantHash() string { return Hash(r.BillID, r.Phone, r.Price) }

// BillCreated is the data of POST /bill's answer. ShortURL is the pay link,
// which no later call returns: the adapter hands it back in
// pgclient.Accepted.URL for payflow to store.
type BillCreated struct {
	APIKey   string `json:"apiKey,omitempty"`
	Member   string `json:"member,omitempty"`
	Merchant string `json:"merchant,omitempty"`
	BillID   string `json:"billId"`
	Hash     string `json:"hash,omitempty"`
	ShortURL string `json:"shortUrl"`
}

// BillRef names one bill: the body of /bill/read.
type BillRef struct {
	BillID string `json:"billId"`
}

// BillRead is the data of /bill/read (the documented field set; the
// adapter reads the first few).
type BillRead struct {
	BillID    string `json:"billId"`
	ApprState string `json:"apprState"`
	ApprPrice Number `json:"apprPrice,omitempty"`
	// Price: ASSUMPTION(read-price): the documented read answer has
	// apprPrice only, which may be empty before payment. The adapter reads
	// apprPrice and falls back to price (the bill's own amount) when a W or
	// D bill has no apprPrice; if neither is there, it uses the amount it
	// sent when it created the bill in this process.
	Price       Number `json:"price,omitempty"`
	ApprDt      string `json:"apprDt,omitempty"`
	ApprNum     string `json:"apprNum,omitempty"`
	ApprPayType string `json:"apprPayType,omitempty"`
}

// CancelRequest is POST /bill/cancel: cancel a paid bill, in full (no
// partial amount is documented). Its hash has 2 fields: no phone.
type CancelRequest struct {
	BillID       string `json:"billId"`
	Price        string `json:"price"`
	CancelReason string `json:"cancelReason"`
	Hash         string `json:"hash"`
}

// WantHash is the hash the request must carry.
func (r CancelRequest) WantHash() string { return Hash(r.BillID, "", r.Price) }

// MaxCancelReason is the longest cancelReason sent: a third-party
// integrator reports that longer ones are refused.
const MaxCancelReason = 20

// BillCancelled is the data of /bill/cancel's answer.
type BillCancelled struct {
	BillID        string `json:"billId"`
	Hash          string `json:"hash,omitempty"`
	ApprNum       string `json:"apprNum,omitempty"`
	ApprOriginNum string `json:"apprOriginNum,omitempty"`
	ApprCancelDt  string `json:"apprCancelDt,omitempty"`
}

// DestroyRequest is POST /bill/destroy: void an unpaid (W) bill. Its hash
// has 2 fields: no phone.
type DestroyRequest struct {
	BillID string `json:"billId"`
	Price  string `json:"price"`
	Hash   string `json:"hash"`
}

// WantHash is the hash the request must carry.
func (r DestroyRequest) WantHash() string { return Hash(r.BillID, "", r.Price) }

// RPBill is POST /bill/rp, the charge of a stored payment method.
//
// ASSUMPTION(rp): the digest has the path and the name only. Everything
// about this request is assumed, here and nowhere else:
//   - the body is the usual envelope with the bill under "bill";
//   - the stored method is named by PayMethodID, which holds payflow's
//     billing key for the method (whatever PaySSam gave at registration);
//   - the hash has 2 fields (no phone in the request);
//   - a 0000 answer means the card was approved at once, and the bill then
//     reads F with apprPayType CARD_RP (RPResult);
//   - no code is known to mean "card refused": none is mapped to a decline
//     (see codeKinds), so a refused card fails the charge rather than
//     falling back to a KakaoTalk bill on a guess.
type RPBill struct {
	BillID      string `json:"billId"`
	ProductName string `json:"productName"`
	Price       string `json:"price"`
	PayMethodID string `json:"payMethodId"`
	CallbackURL string `json:"callbackUrl"`
	Hash        string `json:"hash"`
}

// WantHash is the hash the request must carry. ASSUMPTION(rp): 2 fields.
func (r RPBill) WantHash() string { return Hash(r.BillID, "", r.Price) }

// RPResult is the data of /bill/rp's answer. ASSUMPTION(rp): like a read.
type RPResult struct {
	BillID    string `json:"billId"`
	ApprState string `json:"apprState,omitempty"`
	ApprNum   string `json:"apprNum,omitempty"`
}

// Response is every answer, errors included, which come with HTTP 200:
// the code decides. The text is "message" in the sandbox and "msg" in the
// docs; both are read.
type Response struct {
	Code    Code            `json:"code"`
	Message string          `json:"message,omitempty"`
	Msg     string          `json:"msg,omitempty"`
	Data    json.RawMessage `json:"data,omitempty"`
}

// Text is the answer's message, wherever it was.
func (r Response) Text() string {
	if r.Message != "" {
		return r.Message
	}
	return r.Msg
}

// Code is an answer code. v2 codes are strings ("0000", "BILL_003"); v1's
// were numbers in places (9800), so a JSON number is read as its digits.
type Code string

func (c *Code) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if bytes.Equal(b, []byte("null")) {
		*c = ""
		return nil
	}
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*c = Code(strings.TrimSpace(s))
		return nil
	}
	var n json.Number
	if err := json.Unmarshal(b, &n); err != nil {
		return err
	}
	*c = Code(n.String())
	return nil
}

// Number is an amount in an answer: PaySSam sends prices as strings of
// digits in requests; answers are read whether they hold a string or a
// number. Empty means absent.
type Number string

func (n *Number) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	switch {
	case bytes.Equal(b, []byte("null")):
		*n = ""
		return nil
	case len(b) > 0 && b[0] == '"':
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*n = Number(strings.TrimSpace(s))
		return nil
	}
	var j json.Number
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	*n = Number(j.String())
	return nil
}

// Int64 is the amount, and whether it is a plain non-negative integer.
func (n Number) Int64() (int64, bool) {
	if n == "" {
		return 0, false
	}
	v, err := strconv.ParseInt(string(n), 10, 64)
	return v, err == nil && v >= 0
}

// Price formats an amount as PaySSam takes it: decimal digits.
func Price(amount int64) string { return strconv.FormatInt(amount, 10) }
