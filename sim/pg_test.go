package sim_test

import (
	"testing"

	"github.com/payflow/payflow/pgclient"
	"github.com/payflow/payflow/pgclient/pgclienttest"
	"github.com/payflow/payflow/sim"
)

// The simulation's PG keeps the contract every PG adapter keeps: the
// world's invariants hold against the behaviour real PGs are held to.
func TestThePGPassesTheSharedSuite(t *testing.T) {
	pg := sim.NewPG()
	pgclienttest.Run(t, pgclienttest.Harness{
		New: func(*testing.T) pgclient.Client { return pg.Client(nil, nil) },
		Settle: func(t *testing.T, billID string, status pgclient.PaymentStatus) {
			if err := pg.Settle(billID, status); err != nil {
				t.Fatal(err)
			}
		},
		GoodKey: "bk_good",
		DeclineKeys: map[string]string{"declined": "decline_card", "expired": "expired_card",
			"limit_exceeded": "limit_card", "invalid_billing_key": "invalid_card"},
	})
}
