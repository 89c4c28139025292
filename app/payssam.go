package app

import (
	"context"
	"net/netip"

	"github.com/payflow/payflow/pgclient"
	"github.com/payflow/payflow/pgclient/payssam"
	"github.com/payflow/payflow/store"
	"github.com/payflow/payflow/webhook"
)

// PaySSamConfig makes 결제선생 (PaySSam) the PG (PAYFLOW_PG_PROVIDER=payssam).
type PaySSamConfig struct {
	// Adapter is the adapter's configuration; its MerchantOf and StoredURL
	// are set by Run, from the store.
	Adapter payssam.Config
	// AllowFrom, when not empty, are the only source addresses whose
	// callbacks are heard (PAYFLOW_PAYSSAM_ALLOW_FROM).
	AllowFrom []netip.Prefix
}

// newPaySSam builds the adapter with what only the store knows: the
// merchant of a bill this process did not create, and the pay URL PaySSam
// gave when the bill was created (it has no call that returns it again).
func newPaySSam(c *PaySSamConfig, st *store.Store) (*payssam.Client, error) {
	cfg := c.Adapter
	cfg.MerchantOf = st.MerchantOf
	cfg.StoredURL = func(ctx context.Context, billID string) (pgclient.BillURL, error) {
		u, exp, err := st.PGURL(ctx, billID)
		return pgclient.BillURL{URL: u, ExpiresAt: exp}, err
	}
	return payssam.New(cfg)
}

// paySSamReceiver serves POST /webhooks/pg/payssam.
func paySSamReceiver(cfg Config, st *store.Store, settler webhook.Settler, o webhook.Observer) *webhook.PaySSam {
	return &webhook.PaySSam{
		Bills: st.BillsWithPrefix, PG: cfg.PG, Settler: settler,
		APIKey: cfg.PaySSam.Adapter.APIKey, AllowFrom: cfg.PaySSam.AllowFrom,
		Logger: cfg.Logger.With("part", "webhook"), Observer: o,
	}
}
