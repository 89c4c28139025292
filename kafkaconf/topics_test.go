package kafkaconf_test

import (
	"strings"
	"testing"

	"github.com/payflow/payflow/kafkaconf"
)

func TestTopicsDefaultToTheContract(t *testing.T) {
	got := kafkaconf.Topics{Events: "orders.results"}.WithDefaults()
	want := kafkaconf.Topics{Requests: "payment.requests", Events: "orders.results", DLQ: "payment.requests.dlq"}
	if got != want {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	if kafkaconf.DefaultGroup != "payflow" {
		t.Fatalf("default group %q", kafkaconf.DefaultGroup)
	}
}

func TestTopicsValidate(t *testing.T) {
	cases := []struct {
		name string
		t    kafkaconf.Topics
		want string
	}{
		{"defaults", kafkaconf.Topics{}, ""},
		{"renamed", kafkaconf.Topics{Requests: "team-a.payment_requests", Events: "team-a.payment_events", DLQ: "team-a.dlq"}, ""},
		{"space", kafkaconf.Topics{Requests: "payment requests"}, "PAYFLOW_TOPIC_REQUESTS"},
		{"slash", kafkaconf.Topics{DLQ: "a/b"}, "PAYFLOW_TOPIC_DLQ"},
		{"dot", kafkaconf.Topics{Events: "."}, "PAYFLOW_TOPIC_EVENTS"},
		{"too long", kafkaconf.Topics{Events: strings.Repeat("e", 250)}, "longer than 249"},
		{"events into requests", kafkaconf.Topics{Events: "payment.requests"}, "PAYFLOW_TOPIC_REQUESTS and PAYFLOW_TOPIC_EVENTS"},
		{"dead letters into requests", kafkaconf.Topics{Requests: "in", DLQ: "in"}, "PAYFLOW_TOPIC_REQUESTS and PAYFLOW_TOPIC_DLQ"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.t.Validate()
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
	if kafkaconf.ValidGroup(strings.Repeat("g", 256)) == nil || kafkaconf.ValidGroup("payflow-eu") != nil {
		t.Fatal("group names")
	}
}
