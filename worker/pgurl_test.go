package worker_test

import (
	"context"
	"testing"
	"time"

	"github.com/payflow/payflow/pgclient"
	"github.com/payflow/payflow/worker"
)

// linkPG is a PG that gives a bill's pay URL only when it accepts it.
type linkPG struct{ *fakePG }

func (p linkPG) SendKakaoBill(ctx context.Context, r pgclient.KakaoBillRequest) (pgclient.Accepted, error) {
	acc, err := p.fakePG.SendKakaoBill(ctx, r)
	if err == nil {
		acc.URL, acc.URLExpiresAt = "https://pay.example/"+r.BillID, time.Date(2030, 1, 1, 15, 0, 0, 0, time.UTC)
	}
	return acc, err
}

// The pay URL a PG gives only at acceptance is stored with the bill.
func TestThePayURLGivenAtAcceptanceIsStored(t *testing.T) {
	e := setup(t, methods{})
	e.w = worker.New(worker.Config{Store: e.st, PG: linkPG{e.pg}, Methods: methods{}, Lease: time.Minute,
		RetryBudget: 2 * time.Second, RetryInitial: time.Millisecond})
	bill := e.placed("c1", 5000)
	u, exp, err := e.st.PGURL(context.Background(), bill)
	if err != nil || u != "https://pay.example/"+bill || !exp.Equal(time.Date(2030, 1, 1, 15, 0, 0, 0, time.UTC)) {
		t.Fatalf("stored pay URL %q %v, %v", u, exp, err)
	}
}
