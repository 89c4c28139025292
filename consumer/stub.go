package consumer

import (
	"errors"
	"strconv"

	"github.com/segmentio/kafka-go"
)

// stubAfter is how many failed writes of a full dead letter make the
// consumer write a Stub instead, when no error said the copy is refused.
const stubAfter = 3

// maxStubKey bounds the key a stub keeps: a key is a charge id, and one
// larger than this is left out like the value.
const maxStubKey = 256

// Stub is the dead letter written when the dead-letter topic does not take
// a message's copy: its key and origin (the writer adds the error, source
// topic, partition and offset), no value and none of its headers, and
// headers that say what was left out: dlq-value-dropped (the value's size
// in bytes), dlq-headers-dropped (how many headers, when there were any)
// and dlq-key-dropped (the key's size, when over 256 bytes). The original
// stays at its partition and offset for as long as the topic keeps it.
func Stub(m kafka.Message) kafka.Message {
	s := kafka.Message{Topic: m.Topic, Partition: m.Partition, Offset: m.Offset, Key: m.Key,
		Headers: []kafka.Header{{Key: "dlq-value-dropped", Value: []byte(strconv.Itoa(len(m.Value)))}}}
	if len(m.Headers) > 0 {
		s.Headers = append(s.Headers, kafka.Header{Key: "dlq-headers-dropped", Value: []byte(strconv.Itoa(len(m.Headers)))})
	}
	if len(m.Key) > maxStubKey {
		s.Key = nil
		s.Headers = append(s.Headers, kafka.Header{Key: "dlq-key-dropped", Value: []byte(strconv.Itoa(len(m.Key)))})
	}
	return s
}

// refused reports a write error that says the topic will never take the
// message as it is: too large for the client or the broker, or another
// error the broker does not call temporary.
func refused(err error) bool {
	var werrs kafka.WriteErrors
	if errors.As(err, &werrs) {
		for _, e := range werrs {
			if e != nil && refused(e) {
				return true
			}
		}
		return false
	}
	var tooLarge kafka.MessageTooLargeError
	if errors.As(err, &tooLarge) {
		return true
	}
	var kerr kafka.Error
	return errors.As(err, &kerr) && !kerr.Temporary()
}
