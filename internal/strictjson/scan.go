package strictjson

import (
	"encoding/json"
	"reflect"
	"strconv"
	"unicode/utf8"
)

// scanner walks a document that json.Valid has accepted, as walker does,
// finding the same first error, but over the bytes themselves: no token
// values, no decoder state, no allocation but the keys it must compare.
// Syntax is not its concern (the document is valid), so it only finds
// where each key and value starts and ends. A document json.Valid refuses
// goes to walker, whose syntax errors say where the document goes wrong.
type scanner struct {
	data []byte
	pos  int
	cfg  config
}

func (s *scanner) space() {
	for s.pos < len(s.data) {
		switch s.data[s.pos] {
		case ' ', '\t', '\n', '\r':
			s.pos++
		default:
			return
		}
	}
}

// value is walker.value over the bytes.
func (s *scanner) value(t reflect.Type, path string) error {
	t, custom := target(t)
	if custom {
		return s.custom(t, path)
	}
	s.space()
	switch s.data[s.pos] {
	case '{':
		s.pos++
		return s.object(t, path)
	case '[':
		s.pos++
		return s.array(t, path)
	}
	s.skip()
	return nil
}

// object is walker.object over the bytes; the opening brace is read. It
// has no depth to check: json.Valid refuses what walker would find nested
// too deeply.
func (s *scanner) object(t reflect.Type, path string) error {
	o := s.cfg.object(t, path)
	for s.space(); s.data[s.pos] != '}'; {
		key := s.key()
		s.space()
		s.pos++ // ':'
		child, err := o.member(key)
		if err != nil {
			return err
		}
		if err := s.value(child, join(path, key)); err != nil {
			return err
		}
		s.space()
		if s.data[s.pos] == ',' {
			s.pos++
			s.space()
		}
	}
	s.pos++ // '}'
	return nil
}

// array is walker.array over the bytes; the opening bracket is read.
func (s *scanner) array(t reflect.Type, path string) error {
	elem := element(t)
	for i := 0; ; i++ {
		s.space()
		if s.data[s.pos] == ']' {
			break
		}
		if err := s.value(elem, path+"["+strconv.Itoa(i)+"]"); err != nil {
			return err
		}
		s.space()
		if s.data[s.pos] == ',' {
			s.pos++
		}
	}
	s.pos++ // ']'
	return nil
}

// custom is walker.custom over the bytes.
func (s *scanner) custom(t reflect.Type, path string) error {
	s.space()
	start := s.pos
	s.skip()
	raw := s.data[start:s.pos]
	inner := &scanner{data: raw, cfg: s.cfg}
	if err := inner.value(nil, path); err != nil {
		return err
	}
	return decodeCustom(raw, t, path)
}

// key reads an object's key, as encoding/json decodes it: a key with an
// escape or a byte outside ASCII is unquoted by encoding/json itself
// (which also turns invalid UTF-8 into U+FFFD), so two keys are the same
// here exactly when they are the same to the decoder.
func (s *scanner) key() string {
	start := s.pos
	plain := true
	s.pos++ // '"'
	for {
		c := s.data[s.pos]
		if c == '"' {
			break
		}
		if c == '\\' {
			plain = false
			s.pos += 2
			continue
		}
		if c >= utf8.RuneSelf {
			plain = false
		}
		s.pos++
	}
	s.pos++ // '"'
	if plain {
		return string(s.data[start+1 : s.pos-1])
	}
	var k string
	_ = json.Unmarshal(s.data[start:s.pos], &k) // a valid document's key always unquotes
	return k
}

// skip moves past one value: a string, a number, a literal, or an object
// or array with everything in it.
func (s *scanner) skip() {
	depth := 0
	for {
		switch c := s.data[s.pos]; c {
		case '"':
			s.pos++
			for s.data[s.pos] != '"' {
				if s.data[s.pos] == '\\' {
					s.pos++
				}
				s.pos++
			}
			s.pos++
		case '{', '[':
			depth++
			s.pos++
		case '}', ']':
			depth--
			s.pos++
		case ',', ':', ' ', '\t', '\n', '\r':
			s.pos++
		default: // a number or a literal
			for s.pos < len(s.data) && !delimiter(s.data[s.pos]) {
				s.pos++
			}
		}
		if depth == 0 {
			return
		}
	}
}

func delimiter(c byte) bool {
	switch c {
	case ',', '}', ']', ':', ' ', '\t', '\n', '\r':
		return true
	}
	return false
}

// Members calls fn with each member of data, a JSON object, in order: its
// key as encoding/json decodes it, and its value's bytes as they stand in
// data. It stops when fn returns false. It reports whether data is a valid
// JSON object; for any other document it calls fn for nothing.
func Members(data []byte, fn func(key string, value []byte) bool) bool {
	if !json.Valid(data) {
		return false
	}
	s := &scanner{data: data}
	s.space()
	if s.data[s.pos] != '{' {
		return false
	}
	s.pos++
	for s.space(); s.data[s.pos] != '}'; {
		key := s.key()
		s.space()
		s.pos++ // ':'
		s.space()
		start := s.pos
		s.skip()
		if !fn(key, s.data[start:s.pos]) {
			return true
		}
		s.space()
		if s.data[s.pos] == ',' {
			s.pos++
			s.space()
		}
	}
	return true
}
