package main

import (
	"os"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/payflow/payflow/app"
	"github.com/payflow/payflow/pgclient/payssam"
	"github.com/payflow/payflow/webhook"
)

// The PG providers payflow speaks (PAYFLOW_PG_PROVIDER / --pg-provider).
const (
	providerSim     = "sim"
	providerPaySSam = "payssam"
)

// pgFlags choose the PG and configure PaySSam. The API key has no flag: a
// flag would show it in the process list.
type pgFlags struct {
	provider                     string
	psURL, psMember, psMerchants string
	psCallbackURL, psAllowFrom   string
	psBillValidity               time.Duration
}

func (f *pgFlags) register(fl *pflag.FlagSet) {
	fl.StringVar(&f.provider, "pg-provider", env("PAYFLOW_PG_PROVIDER", providerSim), "the PG: sim (payflow's own protocol, PAYFLOW_PG_URL) or payssam (결제선생 partner API v2)")
	fl.StringVar(&f.psURL, "payssam-url", os.Getenv("PAYFLOW_PAYSSAM_URL"), "PaySSam partner API root, e.g. https://sandbox.paymint.co.kr/partner (no default)")
	fl.StringVar(&f.psMember, "payssam-member", os.Getenv("PAYFLOW_PAYSSAM_MEMBER"), "PaySSam partner user code (member)")
	fl.StringVar(&f.psMerchants, "payssam-merchants", os.Getenv("PAYFLOW_PAYSSAM_MERCHANTS"), "merchant_id:payssam_merchant_code,... (every merchant that charges)")
	fl.StringVar(&f.psCallbackURL, "payssam-callback-url", os.Getenv("PAYFLOW_PAYSSAM_CALLBACK_URL"), "the public URL of payflow's /webhooks/pg/payssam, sent with every bill")
	fl.StringVar(&f.psAllowFrom, "payssam-allow-from", os.Getenv("PAYFLOW_PAYSSAM_ALLOW_FROM"), "IP addresses or CIDR prefixes PaySSam callbacks may come from, comma separated (empty: any)")
	fl.DurationVar(&f.psBillValidity, "payssam-bill-validity", payssam.DefaultBillValidity, "how long a PaySSam KakaoTalk bill stays payable (expireDt, a KST date)")
}

// usesPaySSam reports whether PaySSam is the PG; any other value than the
// two providers is a usage error.
func (f *pgFlags) usesPaySSam() (bool, error) {
	switch strings.TrimSpace(f.provider) {
	case providerSim, "":
		return false, nil
	case providerPaySSam:
		return true, nil
	}
	return false, usagef("--pg-provider (PAYFLOW_PG_PROVIDER) %q: must be %s or %s", f.provider, providerSim, providerPaySSam)
}

// paySSam checks PaySSam's configuration without touching the network and
// returns it. apiKey comes from PAYFLOW_PAYSSAM_API_KEY. Every problem is a
// usage error naming the variable, never its value when it is a secret.
func (f *pgFlags) paySSam(apiKey string, timeout time.Duration) (*app.PaySSamConfig, error) {
	var missing []string
	for _, v := range []struct{ name, val string }{
		{"PAYFLOW_PAYSSAM_URL (--payssam-url)", f.psURL},
		{"PAYFLOW_PAYSSAM_API_KEY", apiKey},
		{"PAYFLOW_PAYSSAM_MEMBER (--payssam-member)", f.psMember},
		{"PAYFLOW_PAYSSAM_MERCHANTS (--payssam-merchants)", f.psMerchants},
		{"PAYFLOW_PAYSSAM_CALLBACK_URL (--payssam-callback-url)", f.psCallbackURL},
	} {
		if strings.TrimSpace(v.val) == "" {
			missing = append(missing, v.name)
		}
	}
	if len(missing) > 0 {
		return nil, usagef("the PaySSam PG needs %s", strings.Join(missing, ", "))
	}
	merchants, err := payssam.ParseMerchants(f.psMerchants)
	if err != nil {
		return nil, usagef("PAYFLOW_PAYSSAM_MERCHANTS: %v", err)
	}
	allow, err := webhook.ParseAllowList(f.psAllowFrom)
	if err != nil {
		return nil, usagef("PAYFLOW_PAYSSAM_ALLOW_FROM: %v", err)
	}
	cfg := payssam.Config{URL: strings.TrimSpace(f.psURL), APIKey: apiKey, Member: f.psMember, Merchants: merchants,
		CallbackURL: strings.TrimSpace(f.psCallbackURL), BillValidity: f.psBillValidity, Timeout: timeout}
	if _, err := payssam.New(cfg); err != nil {
		// The adapter's messages name fields, never their values.
		return nil, usagef("PaySSam configuration: %v", strings.TrimPrefix(err.Error(), "payssam: "))
	}
	return &app.PaySSamConfig{Adapter: cfg, AllowFrom: allow}, nil
}
