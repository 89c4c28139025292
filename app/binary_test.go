package app_test

import (
	"encoding/json"
	"testing"

	"github.com/segmentio/kafka-go"

	"github.com/payflow/payflow/events"
)

// binaryCharge is a charge request in the binary content mode of the
// CloudEvents Kafka binding: attributes in ce_ headers, data the value.
func binaryCharge(id string) kafka.Message {
	return kafka.Message{Key: []byte(id),
		Headers: []kafka.Header{
			{Key: "ce_specversion", Value: []byte("1.0")},
			{Key: "ce_id", Value: []byte("ev-" + id)},
			{Key: "ce_source", Value: []byte("shop")},
			{Key: "ce_type", Value: []byte(events.TypeChargeRequested)},
			{Key: "ce_subject", Value: []byte(id)},
			{Key: "ce_time", Value: []byte("2026-11-25T00:00:00.000Z")},
			{Key: "content-type", Value: []byte("application/json")},
		},
		Value: []byte(`{"merchant_id":"m","charge_id":"` + id + `","amount":15000,"currency":"KRW","order_name":"coffee",` +
			`"customer":{"phone":"010-1234-5678","name":"Kim"}}`)}
}

// A binary-mode charge request is executed like a structured one: it is
// placed with the PG and its result published.
func TestBinaryModeRequestIsExecuted(t *testing.T) {
	p := start(t, acceptingPG(), nil)
	p.publish(t, binaryCharge("c-bin"))
	m := readEvent(t, p.kafka, nil, events.TopicEvents, events.TypeChargeProcessed)
	var ev struct {
		Subject string
		Data    events.ChargeProcessed
	}
	if err := json.Unmarshal(m.Value, &ev); err != nil {
		t.Fatal(err)
	}
	if string(m.Key) != "c-bin" || ev.Subject != "c-bin" || ev.Data.ChargeID != "c-bin" || ev.Data.BillID == "" {
		t.Fatalf("result %s: %s", m.Key, m.Value)
	}
}
