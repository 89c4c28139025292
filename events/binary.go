package events

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	cloudevents "github.com/cloudevents/sdk-go/v2/event"
)

// The CloudEvents Kafka protocol binding (v1.0) carries an event in one of
// two content modes:
//
//   - structured: the value is the whole event in an event format, and the
//     content-type header names the format (application/cloudevents+json);
//   - binary: the value is the event's data, the content-type header is its
//     datacontenttype, and every other attribute is a header named ce_ +
//     the attribute's name (ce_specversion, ce_id, ce_source, ce_type,
//     ce_subject, ce_time, and extensions such as ce_payflowsig), its value
//     the attribute's string form in UTF-8.
//
// A message whose content-type starts with application/cloudevents is
// structured; otherwise a message with any ce_ header is binary. A message
// with neither is read as structured, as payflow always has: producers that
// send the JSON event without a content-type header keep working.
//
// A binary-mode message is turned into its structured equivalent (the
// attributes from the headers, data the value's bytes unchanged) and then
// decoded by Decode: one set of rules for both modes. Before that the
// headers are held to the rules Decode applies to attributes (valid UTF-8,
// no control characters, bounded length), and to one meaning: a ce_ header
// or content-type given twice, in any letter case, is unparseable.

// Header is one Kafka record header. It has the layout of the Kafka
// clients' header types (kafka-go's kafka.Header converts to it), so this
// package needs none of them.
type Header struct {
	Key   string
	Value []byte
}

// HeaderContentType is the Kafka header that carries the content type.
const HeaderContentType = "content-type"

// HeaderPrefix prefixes the attribute headers of a binary-mode event.
const HeaderPrefix = "ce_"

// Binary reports whether a message with these headers is a binary-mode
// CloudEvent (see the rules above).
func Binary(headers []Header) bool {
	binary := false
	for _, h := range headers {
		key := strings.ToLower(h.Key)
		switch {
		case key == HeaderContentType:
			if structuredContentType(string(h.Value)) {
				return false
			}
		case strings.HasPrefix(key, HeaderPrefix):
			binary = true
		}
	}
	return binary
}

// structuredContentType reports a media type of the CloudEvents formats
// (application/cloudevents+json and its kin).
func structuredContentType(ct string) bool {
	return strings.HasPrefix(strings.ToLower(strings.TrimSpace(ct)), "application/cloudevents")
}

// DecodeMessage parses an input Kafka message in either content mode. Every
// error wraps ErrUnparseable and none quotes the message.
func DecodeMessage(value []byte, headers []Header) (Envelope, error) {
	structured, err := Structured(value, headers)
	if err != nil {
		return Envelope{}, err
	}
	return Decode(structured)
}

// Structured returns a message's value in structured mode: a structured
// message's value as it is, a binary one's event rendered as JSON with its
// data's bytes unchanged. An error (wrapping ErrUnparseable, quoting
// nothing) means the headers are not a binary-mode event payflow reads.
// Decode checks the result like any structured event.
func Structured(value []byte, headers []Header) ([]byte, error) {
	if err := checkContentTypes(headers); err != nil {
		return nil, err
	}
	if !Binary(headers) {
		return value, nil
	}
	return binaryToStructured(value, headers)
}

// checkContentTypes refuses a message with two content-type headers: its
// mode, or its data's type, could be read two ways.
func checkContentTypes(headers []Header) error {
	n := 0
	for _, h := range headers {
		if strings.EqualFold(h.Key, HeaderContentType) {
			if n++; n > 1 {
				return fmt.Errorf("%w: header content-type appears twice", ErrUnparseable)
			}
		}
	}
	return nil
}

// attributeOrder is the order a binary event's known attributes are
// rendered in; extensions follow, then data.
var attributeOrder = []string{"specversion", "id", "source", "type", "subject", "time", "dataschema", "datacontenttype"}

func binaryToStructured(value []byte, headers []Header) ([]byte, error) {
	if len(value) > MaxEventSize {
		return nil, fmt.Errorf("%w: %d bytes is over the %d byte limit", ErrUnparseable, len(value), MaxEventSize)
	}
	size := len(value)
	attrs := map[string]string{}
	var extensions []string
	for _, h := range headers {
		key := strings.ToLower(h.Key)
		var name string
		switch {
		case key == HeaderContentType:
			name = "datacontenttype"
		case strings.HasPrefix(key, HeaderPrefix):
			name = key[len(HeaderPrefix):]
		default:
			continue // another header (tracing, the producer's own): not the event's
		}
		size += len(h.Key) + len(h.Value)
		if size > MaxEventSize {
			return nil, fmt.Errorf("%w: the event's headers and value are over the %d byte limit", ErrUnparseable, MaxEventSize)
		}
		known := slices.Contains(attributeOrder, name)
		if !known {
			if name == "data" || !cloudevents.IsExtensionNameValid(name) {
				return nil, fmt.Errorf("%w: a ce_ header does not name an attribute", ErrUnparseable)
			}
		}
		if _, dup := attrs[name]; dup {
			if !known {
				return nil, fmt.Errorf("%w: an extension attribute is given twice in the headers", ErrUnparseable)
			}
			return nil, fmt.Errorf("%w: attribute %s is given twice in the headers", ErrUnparseable, name)
		}
		v := string(h.Value)
		if known {
			if why := checkString(v, MaxAttributeLen); why != "" {
				return nil, fmt.Errorf("%w: header of attribute %s %s", ErrUnparseable, name, why)
			}
		} else {
			if why := checkString(v, MaxExtensionLen); why != "" {
				return nil, fmt.Errorf("%w: header of an extension attribute %s", ErrUnparseable, why)
			}
			extensions = append(extensions, name)
		}
		attrs[name] = v
	}
	if _, ok := attrs["specversion"]; !ok {
		return nil, fmt.Errorf("%w: header ce_specversion is missing", ErrUnparseable)
	}
	if !jsonContentType(attrs["datacontenttype"]) {
		return nil, fmt.Errorf("%w: datacontenttype is not JSON", ErrUnparseable)
	}
	if len(bytes.TrimSpace(value)) == 0 || !json.Valid(value) {
		return nil, fmt.Errorf("%w: data is missing or not JSON", ErrUnparseable)
	}

	var b bytes.Buffer
	b.Grow(size + 256)
	b.WriteByte('{')
	field := func(name, v string) {
		if b.Len() > 1 {
			b.WriteByte(',')
		}
		k, _ := json.Marshal(name)
		s, _ := json.Marshal(v) // checked above: valid UTF-8, so unchanged by encoding
		b.Write(k)
		b.WriteByte(':')
		b.Write(s)
	}
	for _, name := range attributeOrder {
		if v, ok := attrs[name]; ok {
			field(name, v)
		}
	}
	for _, name := range extensions {
		field(name, attrs[name])
	}
	b.WriteString(`,"data":`)
	b.Write(value)
	b.WriteByte('}')
	return b.Bytes(), nil
}

// jsonContentType reports a datacontenttype whose data payflow reads as
// JSON; absent means JSON.
func jsonContentType(ct string) bool {
	return ct == "" || ct == "application/json" || ct == "text/json"
}
