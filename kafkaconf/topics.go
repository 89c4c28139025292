package kafkaconf

import (
	"fmt"

	"github.com/payflow/payflow/events"
)

// DefaultGroup is the consumer group of payflow's workers.
const DefaultGroup = "payflow"

// Topics are the names of payflow's topics. An empty name is the
// contract's default.
type Topics struct {
	Requests string // payment.requests
	Events   string // payment.events
	DLQ      string // payment.requests.dlq
}

// DefaultTopics are the contract's names.
func DefaultTopics() Topics {
	return Topics{Requests: events.TopicRequests, Events: events.TopicEvents, DLQ: events.TopicDLQ}
}

// WithDefaults fills the names left empty with the contract's.
func (t Topics) WithDefaults() Topics {
	d := DefaultTopics()
	if t.Requests == "" {
		t.Requests = d.Requests
	}
	if t.Events == "" {
		t.Events = d.Events
	}
	if t.DLQ == "" {
		t.DLQ = d.DLQ
	}
	return t
}

// Validate refuses names Kafka would refuse, and names shared by two
// roles: results or dead letters written to the request topic would come
// back to the worker.
func (t Topics) Validate() error {
	t = t.WithDefaults()
	names := []struct{ env, name string }{
		{"PAYFLOW_TOPIC_REQUESTS", t.Requests}, {"PAYFLOW_TOPIC_EVENTS", t.Events}, {"PAYFLOW_TOPIC_DLQ", t.DLQ},
	}
	for i, n := range names {
		if err := ValidName(n.name); err != nil {
			return fmt.Errorf("kafka: %s: %w", n.env, err)
		}
		for _, m := range names[:i] {
			if m.name == n.name {
				return fmt.Errorf("kafka: %s and %s are both %q: each topic needs its own name", m.env, n.env, n.name)
			}
		}
	}
	return nil
}

// ValidName reports a topic name Kafka does not accept: empty, longer than
// 249 characters, "." or "..", or with characters other than ASCII letters,
// digits, '.', '_' and '-'.
func ValidName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("empty topic name")
	case len(name) > 249:
		return fmt.Errorf("topic name %.20q… is longer than 249 characters", name)
	case name == "." || name == "..":
		return fmt.Errorf("topic name %q is not allowed", name)
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return fmt.Errorf("topic name %q: only ASCII letters, digits, '.', '_' and '-' are allowed", name)
		}
	}
	return nil
}

// ValidGroup refuses a consumer group name Kafka would refuse: empty, or
// longer than 255 characters.
func ValidGroup(group string) error {
	if group == "" || len(group) > 255 {
		return fmt.Errorf("kafka: PAYFLOW_GROUP_ID: a consumer group name has 1 to 255 characters, not %d", len(group))
	}
	return nil
}
