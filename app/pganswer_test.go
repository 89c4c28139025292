package app_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/payflow/payflow/events"
	"github.com/payflow/payflow/pgclient"
)

// nulPG accepts every bill with a transaction id Postgres cannot hold.
type nulPG struct{ *stuckPG }

func (p nulPG) SendKakaoBill(ctx context.Context, req pgclient.KakaoBillRequest) (pgclient.Accepted, error) {
	return pgclient.Accepted{BillID: req.BillID, PGTxID: "tx\x00" + req.BillID}, nil
}

// A bill the PG accepted is recorded and its result published even when
// the PG's answer carries bytes Postgres refuses (found by review: a NUL
// in the transaction id left the charge placing for ever, and its payment
// refused at settlement).
func TestABillAcceptedWithAnUnstorableAnswerIsRecorded(t *testing.T) {
	p := start(t, nulPG{acceptingPG()}, nil)
	p.publish(t, binaryCharge("c-nul"))
	m := readEvent(t, p.kafka, nil, events.TopicEvents, events.TypeChargeProcessed)
	var ev struct{ Data events.ChargeProcessed }
	if err := json.Unmarshal(m.Value, &ev); err != nil {
		t.Fatal(err)
	}
	if ev.Data.ChargeID != "c-nul" || ev.Data.BillID == "" {
		t.Fatalf("result %s", m.Value)
	}
}
