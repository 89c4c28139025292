package consumer

import (
	"bytes"
	"cmp"
	"encoding/json"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Errors the consumer logs or copies into dead-letter headers come from the
// handler and whatever it called: a parser or a database error can quote
// the input, and the input holds phone numbers, names and ids that must not
// reach logs. redact masks, in err's text, every value the message holds;
// partition and offset locate the message for whoever may read it.

const (
	// minMasked is the shortest value masked: shorter ones ("KRW", "1.0",
	// an amount of 500) are no secret, and masking them would mask the
	// error's own words.
	minMasked = 4
	// anywhere is the length from which a value is masked wherever it
	// appears, not only as a word of its own.
	anywhere = 8
	mask     = "***"
)

// redact returns err with every value of the message value that its text
// quotes replaced by ***. The result wraps err, so errors.Is and errors.As
// still see the cause; only the text changes. err comes back as it is when
// there is nothing to mask.
func redact(err error, value []byte) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	masked := maskAll(msg, quotable(value))
	if masked == msg {
		return err
	}
	return &redacted{msg: masked, err: err}
}

type redacted struct {
	msg string
	err error
}

func (r *redacted) Error() string { return r.msg }
func (r *redacted) Unwrap() error { return r.err }

// quotable lists the pieces of value an error could quote, longest first:
// the strings and numbers of a JSON value (not its keys, which are the
// schema), whole and word by word; of anything else, its runs between
// spaces and punctuation.
func quotable(value []byte) []string {
	var out []string
	add := func(s string) {
		if len(s) >= minMasked {
			out = append(out, s)
		}
		for _, w := range strings.FieldsFunc(s, separator) {
			if len(w) >= minMasked && len(w) < len(s) {
				out = append(out, w)
			}
		}
	}
	if !json.Valid(value) {
		for _, w := range bytes.FieldsFunc(value, separator) {
			add(string(w))
		}
	} else {
		walkJSON(value, add)
	}
	slices.SortFunc(out, func(a, b string) int { return cmp.Compare(len(b), len(a)) })
	return slices.Compact(out)
}

// walkJSON calls add with every string and number of a valid JSON value,
// keys left out.
func walkJSON(value []byte, add func(string)) {
	type frame struct{ object, key bool }
	var stack []frame
	valueDone := func() { // after a value in an object comes a key
		if n := len(stack); n > 0 && stack[n-1].object {
			stack[n-1].key = true
		}
	}
	dec := json.NewDecoder(bytes.NewReader(value))
	dec.UseNumber()
	for {
		tok, err := dec.Token()
		if err != nil {
			return
		}
		switch t := tok.(type) {
		case json.Delim:
			switch t {
			case '{':
				stack = append(stack, frame{object: true, key: true})
			case '[':
				stack = append(stack, frame{})
			default:
				stack = stack[:len(stack)-1]
				valueDone()
			}
		case string:
			if n := len(stack); n > 0 && stack[n-1].object && stack[n-1].key {
				stack[n-1].key = false
				continue
			}
			add(t)
			valueDone()
		case json.Number:
			add(t.String())
			valueDone()
		default: // true, false, null
			valueDone()
		}
	}
}

// separator splits values into words: spaces, punctuation and symbols,
// except the characters that ids and keys are made of.
func separator(r rune) bool {
	switch r {
	case '_', '-', '+', '.', '@':
		return false
	}
	return unicode.IsSpace(r) || unicode.IsPunct(r) || unicode.IsSymbol(r) || unicode.IsControl(r)
}

// maskAll replaces the pieces in msg: those of anywhere bytes or more
// wherever they appear, shorter ones only where they stand as a word.
func maskAll(msg string, pieces []string) string {
	for _, p := range pieces {
		if !strings.Contains(msg, p) {
			continue
		}
		if len(p) >= anywhere {
			msg = strings.ReplaceAll(msg, p, mask)
			continue
		}
		var b strings.Builder
		rest := msg
		for {
			i := strings.Index(rest, p)
			if i < 0 {
				b.WriteString(rest)
				break
			}
			before, _ := utf8.DecodeLastRuneInString(rest[:i])
			after, _ := utf8.DecodeRuneInString(rest[i+len(p):])
			b.WriteString(rest[:i])
			if i > 0 && wordRune(before) || i+len(p) < len(rest) && wordRune(after) {
				b.WriteString(p)
			} else {
				b.WriteString(mask)
			}
			rest = rest[i+len(p):]
		}
		msg = b.String()
	}
	return msg
}

func wordRune(r rune) bool { return unicode.IsLetter(r) || unicode.IsDigit(r) || r == '_' }
