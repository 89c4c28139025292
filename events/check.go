package events

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	cloudevents "github.com/cloudevents/sdk-go/v2/event"
)

// Bounds of the envelope's strings. An id, source or subject is a name, not
// a document; the largest extension payflow reads is a few signatures.
const (
	MaxAttributeLen = 256
	MaxExtensionLen = 1024
)

// Decode's errors go into logs and dead-letter headers, so they name the
// attribute and what is wrong with it, never its value: an input that is
// not what it should be can hold anything, a phone number included. The
// dead-lettered message itself keeps the bytes for whoever needs them.

// checkAttributes holds every string of a parsed envelope to the rules
// payflow relies on downstream: valid UTF-8 (Postgres refuses anything
// else), graphic characters only (Postgres refuses NUL; a control
// character in a log line forges lines or colours), bounded length.
func checkAttributes(e *cloudevents.Event) error {
	for _, a := range []struct{ name, v string }{
		{"id", e.ID()}, {"source", e.Source()}, {"type", e.Type()}, {"subject", e.Subject()},
		{"datacontenttype", e.DataContentType()}, {"dataschema", e.DataSchema()},
	} {
		if why := checkString(a.v, MaxAttributeLen); why != "" {
			return fmt.Errorf("%w: attribute %s %s", ErrUnparseable, a.name, why)
		}
	}
	for _, v := range e.Extensions() {
		s, ok := v.(string)
		if !ok {
			if st, isStringer := v.(fmt.Stringer); isStringer {
				s = st.String() // URI and timestamp values
			}
		}
		if why := checkString(s, MaxExtensionLen); why != "" {
			// Extension names come from the input too: not named.
			return fmt.Errorf("%w: an extension attribute %s", ErrUnparseable, why)
		}
	}
	return nil
}

// checkString says what is wrong with s, or "" when nothing is.
func checkString(s string, max int) string {
	if len(s) > max {
		return fmt.Sprintf("is longer than %d bytes", max)
	}
	for _, r := range s {
		switch {
		case r == utf8.RuneError:
			// Invalid bytes, or an escaped lone surrogate that the
			// parser replaced: either way not the text that was sent.
			return "is not valid UTF-8"
		case !unicode.IsGraphic(r):
			return "holds a control or invisible character"
		}
	}
	return ""
}

// parseError describes why the CloudEvents SDK refused value, without
// quoting it (the SDK's own errors quote the input). It runs only on the
// error path, so it may parse again to name the attribute at fault.
func parseError(value []byte, err error) error {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Errorf("%w: not JSON (syntax error at byte %d)", ErrUnparseable, se.Offset)
	}
	var attrs map[string]json.RawMessage
	if json.Unmarshal(value, &attrs) != nil {
		return fmt.Errorf("%w: not a JSON object", ErrUnparseable)
	}
	if _, ok := attrs["specversion"]; !ok {
		return fmt.Errorf("%w: specversion is missing", ErrUnparseable)
	}
	for _, name := range []string{"specversion", "id", "source", "type", "subject", "time", "datacontenttype", "dataschema"} {
		raw, ok := attrs[name]
		if !ok || string(raw) == "null" {
			continue
		}
		var s string
		if json.Unmarshal(raw, &s) != nil {
			return fmt.Errorf("%w: attribute %s is not a string", ErrUnparseable, name)
		}
		if why := checkString(s, MaxAttributeLen); why != "" {
			return fmt.Errorf("%w: attribute %s %s", ErrUnparseable, name, why)
		}
		switch name {
		case "id", "source", "type":
			if s == "" {
				return fmt.Errorf("%w: attribute %s is empty", ErrUnparseable, name)
			}
		}
		switch name {
		case "specversion":
			if s != cloudevents.CloudEventsVersionV1 && s != cloudevents.CloudEventsVersionV03 {
				return fmt.Errorf("%w: specversion is not 1.0", ErrUnparseable)
			}
		case "time":
			if _, err := time.Parse(time.RFC3339Nano, s); err != nil {
				return fmt.Errorf("%w: attribute time is not an RFC 3339 timestamp", ErrUnparseable)
			}
		case "source", "dataschema":
			if _, err := url.Parse(s); err != nil {
				return fmt.Errorf("%w: attribute %s is not a URI reference", ErrUnparseable, name)
			}
		}
	}
	if raw, ok := attrs["data_base64"]; ok {
		var s string
		if json.Unmarshal(raw, &s) != nil {
			return fmt.Errorf("%w: data_base64 is not a string", ErrUnparseable)
		}
		if _, err := base64.StdEncoding.DecodeString(s); err != nil {
			return fmt.Errorf("%w: data_base64 is not base64", ErrUnparseable)
		}
	}
	for name, raw := range attrs {
		if slices.Contains(knownAttributes, name) || name == "data_base64" {
			continue
		}
		if !cloudevents.IsExtensionNameValid(name) {
			return fmt.Errorf("%w: an extension attribute has an invalid name", ErrUnparseable)
		}
		var v any
		if json.Unmarshal(raw, &v) != nil {
			continue
		}
		switch v.(type) {
		case string, float64, bool, nil:
		default:
			return fmt.Errorf("%w: an extension attribute is not a string, number or boolean", ErrUnparseable)
		}
	}
	return fmt.Errorf("%w: not a CloudEvent (an attribute, or data for its datacontenttype, has the wrong form)", ErrUnparseable)
}

// knownAttributes are the CloudEvents context attributes (and data) whose
// names a validation error may repeat; any other name is an extension's,
// taken from the input.
var knownAttributes = []string{"specversion", "id", "source", "type", "subject", "time", "datacontenttype", "dataschema", "data"}

// validationError lists the attributes the SDK found invalid, by name only
// (its messages may quote values).
func validationError(err error) error {
	var ve cloudevents.ValidationError
	if !errors.As(err, &ve) {
		return fmt.Errorf("%w: not a valid CloudEvent", ErrUnparseable)
	}
	var names []string
	for name := range ve {
		if !slices.Contains(knownAttributes, name) {
			name = "an extension"
		}
		if !slices.Contains(names, name) {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return fmt.Errorf("%w: not a valid CloudEvent (invalid: %s)", ErrUnparseable, strings.Join(names, ", "))
}
