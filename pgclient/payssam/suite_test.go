package payssam_test

import (
	"errors"
	"io"
	"log/slog"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/payflow/payflow/pgclient"
	"github.com/payflow/payflow/pgclient/payssam"
	"github.com/payflow/payflow/pgclient/pgclienttest"
	"github.com/payflow/payflow/pgclient/pgsim"
)

const (
	testKey    = "ps_test_key_0123456789"
	testMember = "payflowmember"
)

// simulated starts the simulator in the PaySSam protocol.
func simulated(t *testing.T, cfg pgsim.Config) (*pgsim.Sim, string) {
	t.Helper()
	cfg.Protocol = pgsim.ProtocolPaySSam
	if cfg.APIKey == "" {
		cfg.APIKey = testKey
	}
	if cfg.PaySSamMember == "" {
		cfg.PaySSamMember = testMember
	}
	if cfg.SettleDelay == 0 {
		cfg.SettleDelay = -1
	}
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	sim, err := pgsim.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(sim.Handler())
	t.Cleanup(func() { srv.Close(); sim.Close() })
	return sim, srv.URL
}

func newClient(t *testing.T, url string, mod ...func(*payssam.Config)) *payssam.Client {
	t.Helper()
	cfg := payssam.Config{
		URL: url, APIKey: testKey, Member: testMember,
		Merchants:   map[string]string{"m1": "STORE1", "": "STORE1"},
		CallbackURL: "https://payflow.example/webhooks/pg/payssam",
		Timeout:     5 * time.Second,
	}
	for _, m := range mod {
		m(&cfg)
	}
	c, err := payssam.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func harness(sim *pgsim.Sim, c pgclient.Client) pgclienttest.Harness {
	return pgclienttest.Harness{
		New: func(*testing.T) pgclient.Client { return c },
		Settle: func(t *testing.T, billID string, status pgclient.PaymentStatus) {
			t.Helper()
			err := sim.Settle(payssam.BillID(billID), status)
			if errors.Is(err, pgsim.ErrNotInProtocol) {
				t.Skipf("PaySSam has no %s state (only F, W, C, D)", status)
			}
			if err != nil {
				t.Fatalf("settle %s %s: %v", billID, status, err)
			}
		},
		GoodKey: "rp_method_1",
		// No declines: no PaySSam code is known to mean a refused card.
	}
}

// The adapter against the simulator speaking PaySSam passes the suite
// every adapter must pass, less what PaySSam cannot do (partial refunds,
// failed and expired states, declines), which is skipped or tested as
// refused.
func TestPaySSamAdapterSuite(t *testing.T) {
	sim, url := simulated(t, pgsim.Config{})
	pgclienttest.Run(t, harness(sim, newClient(t, url)))
	for _, e := range sim.Ledger() {
		if n := sim.Charged(e.BillID); n > 1 {
			t.Fatalf("bill %s placed %d times", e.BillID, n)
		}
		if e.Outcome == "invalid" {
			t.Fatalf("the adapter sent a request PaySSam refused as invalid: %+v", e)
		}
	}
}

// The same through several stores: the adapter finds a bill's store by
// reading it when it did not create the bill itself.
func TestPaySSamAdapterSuiteAcrossStoresAndLatency(t *testing.T) {
	sim, url := simulated(t, pgsim.Config{Latency: 5 * time.Millisecond, PaySSamStores: []string{"STORE1", "STORE2"}})
	creator := newClient(t, url, func(c *payssam.Config) { c.Merchants = map[string]string{"m1": "STORE2", "m2": "STORE1", "": "STORE2"} })
	pgclienttest.Run(t, harness(sim, creator))
}
