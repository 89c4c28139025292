package worker_test

import (
	"testing"

	"github.com/payflow/payflow/pgclient"
	"github.com/payflow/payflow/pgclient/pgclienttest"
)

// The worker's tests drive a fake PG; it keeps the contract every PG
// adapter keeps, so what the worker is shown to do against it holds
// against a real one.
func TestTheFakePGPassesTheSharedSuite(t *testing.T) {
	pg := newFakePG()
	pgclienttest.Run(t, pgclienttest.Harness{
		New: func(*testing.T) pgclient.Client { return pg },
		Settle: func(t *testing.T, billID string, status pgclient.PaymentStatus) {
			pg.mu.Lock()
			defer pg.mu.Unlock()
			pay, ok := pg.bills[billID]
			if !ok {
				t.Fatalf("no bill %s", billID)
			}
			pay.Status = status
			pg.bills[billID] = pay
		},
		GoodKey:     "bk_good",
		DeclineKeys: map[string]string{"declined": "decline_card", "expired": "expired_card"},
	})
}
