// Package events owns payflow's wire format: CloudEvents 1.0 in JSON
// structured mode, the event types of the contract and their data.
//
// Input is parsed with the CloudEvents SDK, so whatever an upstream producer
// sends is held to the spec (specversion, id, source, type). Output is
// encoded here directly: the contract fixes the time format to RFC 3339 UTC
// with milliseconds, which the SDK does not emit, and encoding is on the hot
// path of the outbox.
package events

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2/event"
	"github.com/google/uuid"

	"github.com/payflow/payflow/internal/strictjson"
)

// Topics of the contract.
const (
	TopicRequests = "payment.requests"
	TopicEvents   = "payment.events"
	TopicDLQ      = "payment.requests.dlq"
)

// ContentType is the Kafka content-type header of every payflow message.
const ContentType = "application/cloudevents+json"

// Source is the CloudEvents source of every event payflow emits.
const Source = "payflow"

// Input event types.
const (
	TypeChargeRequested = "payment.charge.requested"
	TypeRefundRequested = "payment.refund.requested"
	TypeRepayRequested  = "payment.repay.requested"
	TypeCancelRequested = "payment.bill.cancel.requested"
)

// Output event types.
const (
	TypeChargeProcessed = "payment.charge.processed"
	TypeChargeFailed    = "payment.charge.failed"
	TypeSettled         = "payment.settled"
	TypeRefundSucceeded = "payment.refund.succeeded"
	TypeRefundFailed    = "payment.refund.failed"
	TypeRepayProcessed  = "payment.repay.processed"
	TypeBillCancelled   = "payment.bill.cancelled"
	TypeRejected        = "payment.request.rejected"
)

// MaxEventSize bounds an input message; larger ones go to the DLQ unparsed.
const MaxEventSize = 64 << 10

// Envelope is a decoded input CloudEvent with its data left raw.
type Envelope struct {
	ID      string
	Source  string
	Type    string
	Subject string
	Time    time.Time
	// Data is the exact bytes of the `data` member as they appear in the
	// message (the decoded bytes when the producer used data_base64): what
	// a request signature covers, and what the worker executes.
	Data json.RawMessage
	// TimeText is the time attribute as the producer wrote it ("" when
	// absent): a signature covers the text, not a re-formatted time.
	TimeText string
	// Signature is the payflowsig extension attribute as sent, "" when
	// absent or not a string (see package reqsig).
	Signature string
}

// SignatureExtension names the extension attribute Envelope.Signature
// holds.
const SignatureExtension = "payflowsig"

// ErrUnparseable marks input that is not a CloudEvent payflow knows: it goes
// to the dead-letter topic, not to a rejection event.
var ErrUnparseable = errors.New("unparseable event")

// Decode parses an input message value. Every error wraps ErrUnparseable
// and none quotes the value (see check.go): errors are logged and copied
// into dead-letter headers, and the value may hold personal data.
//
// Every envelope string is checked here, before anything else sees it:
// valid UTF-8, no NUL or other control character, at most MaxAttributeLen
// bytes (MaxExtensionLen for extensions). Postgres refuses a NUL byte, and
// a request it refuses would be retried for ever.
func Decode(value []byte) (Envelope, error) {
	if len(value) > MaxEventSize {
		return Envelope{}, fmt.Errorf("%w: %d bytes is over the %d byte limit", ErrUnparseable, len(value), MaxEventSize)
	}
	// One meaning only: an attribute given twice could be read one way by a
	// producer's validator and another way here. (A key given twice inside
	// data makes a request invalid, not unparseable: the worker rejects it.)
	raw, name, dup := scanMembers(value)
	if dup {
		return Envelope{}, fmt.Errorf("%w: attribute %q appears twice", ErrUnparseable, name)
	}
	// The spec allows one or the other; a parser that took the last of the
	// two could execute other bytes than a signature covers.
	if raw.data != nil && raw.dataBase64 != nil {
		return Envelope{}, fmt.Errorf("%w: data and data_base64 both present", ErrUnparseable)
	}
	var e cloudevents.Event
	if err := json.Unmarshal(value, &e); err != nil {
		return Envelope{}, parseError(value, err)
	}
	if err := checkAttributes(&e); err != nil {
		return Envelope{}, err
	}
	if err := e.Validate(); err != nil {
		return Envelope{}, validationError(err)
	}
	switch e.Type() {
	case TypeChargeRequested, TypeRefundRequested, TypeRepayRequested, TypeCancelRequested:
	default:
		return Envelope{}, fmt.Errorf("%w: type is not a request type", ErrUnparseable)
	}
	if !jsonContentType(e.DataContentType()) {
		return Envelope{}, fmt.Errorf("%w: datacontenttype is not JSON", ErrUnparseable)
	}
	data := json.RawMessage(e.Data())
	if raw.data != nil {
		data = raw.data // the bytes as sent, not as the SDK captured them
	}
	if len(bytes.TrimSpace(data)) == 0 || !json.Valid(data) {
		return Envelope{}, fmt.Errorf("%w: data is missing or not JSON", ErrUnparseable)
	}
	env := Envelope{ID: e.ID(), Source: e.Source(), Type: e.Type(), Subject: e.Subject(), Time: e.Time(), Data: data}
	// Not strings: left empty, which no signature verifies.
	_ = json.Unmarshal(raw.time, &env.TimeText)
	_ = json.Unmarshal(raw.sig, &env.Signature)
	return env, nil
}

// members are the raw values of the top-level members Decode reads itself
// rather than through the SDK: nil when absent.
type members struct {
	time, data, dataBase64, sig json.RawMessage
}

// scanMembers reads the top-level members of a JSON object, keeping the
// raw bytes of those in members, and reports the first key that appears
// twice. Anything that is not an object is left to the decoder (the
// members found so far are returned, and a signature missing for that
// reason verifies nothing).
func scanMembers(value []byte) (m members, dupName string, dup bool) {
	// A valid document is scanned over its bytes; any other token by
	// token, as far as it goes.
	var r memberScan
	if strictjson.Members(value, r.keep) {
		return r.m, r.dupName, r.dup
	}
	return scanMemberTokens(value)
}

func scanMemberTokens(value []byte) (m members, dupName string, dup bool) {
	dec := json.NewDecoder(bytes.NewReader(value))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return m, "", false
	}
	var r memberScan
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return r.m, "", false
		}
		name, _ := t.(string)
		if r.seen[name] {
			r.keep(name, nil)
			return r.m, r.dupName, r.dup
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return r.m, "", false
		}
		r.keep(name, v)
	}
	return r.m, "", false
}

// memberScan keeps what scanMembers looks for, member by member.
type memberScan struct {
	m       members
	seen    map[string]bool
	dupName string
	dup     bool
}

// keep takes one member; false when its key was seen before.
func (r *memberScan) keep(name string, v []byte) bool {
	if r.seen[name] {
		if len(name) > 32 {
			name = name[:32]
		}
		r.dupName, r.dup = name, true
		return false
	}
	if r.seen == nil {
		r.seen = make(map[string]bool, 8)
	}
	r.seen[name] = true
	// Copies, not windows on the caller's buffer, which it may reuse.
	switch name {
	case "time":
		r.m.time = bytes.Clone(v)
	case "data":
		r.m.data = bytes.Clone(v)
	case "data_base64":
		r.m.dataBase64 = bytes.Clone(v)
	case SignatureExtension:
		r.m.sig = bytes.Clone(v)
	}
	return true
}

// wire is the JSON structured-mode layout of an output event.
type wire struct {
	SpecVersion     string `json:"specversion"`
	ID              string `json:"id"`
	Source          string `json:"source"`
	Type            string `json:"type"`
	Subject         string `json:"subject"`
	Time            string `json:"time"`
	DataContentType string `json:"datacontenttype"`
	Data            any    `json:"data"`
}

// TimeFormat is RFC 3339 in UTC with milliseconds, as the contract fixes.
const TimeFormat = "2006-01-02T15:04:05.000Z07:00"

// Encode renders an output event. id must be unique per event: payflow
// derives it from the state transition (see ID) so that writing the same
// transition twice yields the same id and a duplicate is caught by the
// outbox's unique index.
func Encode(id, typ, subject string, at time.Time, data any) ([]byte, error) {
	return json.Marshal(wire{
		SpecVersion:     "1.0",
		ID:              id,
		Source:          Source,
		Type:            typ,
		Subject:         subject,
		Time:            at.UTC().Format(TimeFormat),
		DataContentType: "application/json",
		Data:            data,
	})
}

// namespace seeds the name-based event ids.
var namespace = uuid.MustParse("7d8d3a4e-5b0c-4f6e-9a51-2c1f0d3b6e90")

// ID derives a stable event id from the parts that name one state
// transition, e.g. ID("charge", chargePK, "processed").
func ID(parts ...string) string {
	var b bytes.Buffer
	for i, p := range parts {
		if i > 0 {
			b.WriteByte(0)
		}
		b.WriteString(p)
	}
	return uuid.NewSHA1(namespace, b.Bytes()).String()
}
