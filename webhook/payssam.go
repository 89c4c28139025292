package webhook

import (
	"context"
	"crypto/subtle"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"

	"github.com/payflow/payflow/internal/strictjson"
	"github.com/payflow/payflow/payflow"
	"github.com/payflow/payflow/pgclient"
	"github.com/payflow/payflow/pgclient/payssam"
)

// ProviderPaySSam is the provider name of 결제선생 (PaySSam) callbacks:
// POST /webhooks/pg/payssam.
const ProviderPaySSam = "payssam"

// PaySSamAck is the body PaySSam requires in answer to its approval
// callback. Any other answer makes PaySSam send the callback again (hourly,
// for a day) and fails its integration review (검수).
const PaySSamAck = `{"code":"0000","msg":"성공하였습니다."}`

// paySSamRetry is the answer to a callback payflow could not decide on yet
// (the PG or the database did not answer): not PaySSamAck, so PaySSam
// sends it again.
const paySSamRetry = `{"code":"ERROR","msg":"retry later"}`

// PaySSam receives PaySSam's approval callbacks. They carry no signature,
// so a callback is only a hint that a bill may have been paid: payflow
// settles a bill only after PaySSam's own bill lookup (/bill/read through
// PG.LookupPayment) reports it paid, not refunded, for exactly the bill's
// amount, and then through the same settlement as every webhook.
//
// Answers: PaySSamAck whenever payflow has decided — settled, already
// settled, or refused (unknown bill, amount mismatch, a lookup that does
// not confirm), so that PaySSam stops sending what can never settle; those
// refusals are logged and counted. A non-ack (5xx) only when payflow could
// not decide (the lookup or the database failed, the bill's placement is
// still being recorded), so that PaySSam sends it again; reconciliation
// settles such bills anyway. A request from outside the allow-list, with a
// wrong apiKey or a body that is not a callback is answered 403/401/400.
type PaySSam struct {
	// Bills returns payflow's bills whose id starts with a prefix,
	// whatever their status (the store's BillsWithPrefix). A PaySSam bill
	// id names the prefix of the payflow bill id it was made from
	// (payssam.UUIDPrefix); the bill it names is the one whose
	// payssam.BillID it is. That bill may still be pending: a callback can
	// arrive before its bill's placement is recorded (an auto-pay approved
	// at once), and is then answered so that PaySSam sends it again.
	Bills func(ctx context.Context, prefix string) ([]payflow.Bill, error)
	// PG confirms a callback with LookupPayment.
	PG      pgclient.Client
	Settler Settler
	// APIKey, when set, must equal a callback's apiKey if the callback
	// carries one (PaySSam has sent callbacks without it). It is compared
	// in constant time and never logged.
	APIKey string
	// AllowFrom, when not empty, lists the source addresses callbacks may
	// come from (the TCP peer: behind a proxy, filter there instead).
	AllowFrom []netip.Prefix
	Logger    *slog.Logger
	// Observer, when set, hears each callback's result (applied,
	// duplicate, ignored, unknown_bill, amount_mismatch, unconfirmed, ...).
	Observer Observer
}

// PaySSamCallback is what payflow reads of an approval callback.
type PaySSamCallback struct {
	BillID  string // PaySSam's bill id (payssam.BillID of payflow's)
	State   string // apprState: F paid, W unpaid, C cancelled, D destroyed
	Price   int64  // apprPrice; 0 when absent
	ApprNum string // approval number, for the logs
	APIKey  string // never log it
}

// paySSamBody accepts both namings: v2 camelCase and v1 snake_case.
type paySSamBody struct {
	APIKey    *string         `json:"apiKey"`
	BillID    *string         `json:"billId"`
	ApprState *string         `json:"apprState"`
	ApprPrice *payssam.Number `json:"apprPrice"`
	ApprNum   *string         `json:"apprNum"`

	V1APIKey    *string         `json:"apikey"`
	V1BillID    *string         `json:"bill_id"`
	V1ApprState *string         `json:"appr_state"`
	V1ApprPrice *payssam.Number `json:"appr_price"`
	V1ApprNum   *string         `json:"appr_num"`
}

// pick takes the v2 field or the v1 one; both at once is ambiguous.
func pick(name string, v2, v1 *string) (string, error) {
	switch {
	case v2 != nil && v1 != nil:
		return "", errors.New(name + " is given in both namings")
	case v2 != nil:
		return *v2, nil
	case v1 != nil:
		return *v1, nil
	}
	return "", nil
}

// ParsePaySSamCallback decodes an approval callback, v2 (camelCase) or v1
// (snake_case). Keys twice or in another letter case are refused (package
// strictjson); other fields are ignored. Text that is not UTF-8 is read as
// U+FFFD, not refused: the callback is only a hint, the bill is found by
// an id that must match exactly and its payment looked up, and a stray
// byte in a field payflow ignores (a name in a legacy Korean encoding)
// must not make it unreadable. Errors name the field, never a value.
func ParsePaySSamCallback(body []byte) (PaySSamCallback, error) {
	var b paySSamBody
	if err := strictjson.Decode(body, &b, strictjson.ReplaceInvalidText()); err != nil {
		var se *strictjson.Error
		if errors.As(err, &se) && se.Field != "" {
			return PaySSamCallback{}, errors.New(se.Field + " " + se.Reason)
		}
		return PaySSamCallback{}, errors.New("body is not a valid callback JSON object")
	}
	var cb PaySSamCallback
	var err error
	if cb.BillID, err = pick("billId", b.BillID, b.V1BillID); err != nil {
		return PaySSamCallback{}, err
	}
	if cb.State, err = pick("apprState", b.ApprState, b.V1ApprState); err != nil {
		return PaySSamCallback{}, err
	}
	if cb.ApprNum, err = pick("apprNum", b.ApprNum, b.V1ApprNum); err != nil {
		return PaySSamCallback{}, err
	}
	if cb.APIKey, err = pick("apiKey", b.APIKey, b.V1APIKey); err != nil {
		return PaySSamCallback{}, err
	}
	price := b.ApprPrice
	switch {
	case b.ApprPrice != nil && b.V1ApprPrice != nil:
		return PaySSamCallback{}, errors.New("apprPrice is given in both namings")
	case b.V1ApprPrice != nil:
		price = b.V1ApprPrice
	}
	if price != nil && *price != "" {
		v, ok := price.Int64()
		if !ok || v <= 0 || v > payflow.MaxAmount {
			return PaySSamCallback{}, errors.New("apprPrice is not an amount")
		}
		cb.Price = v
	}
	switch {
	case !validPaySSamBillID(cb.BillID):
		return PaySSamCallback{}, errors.New("billId is missing or not 1-20 letters and digits")
	case cb.State == "" || len(cb.State) > 8:
		return PaySSamCallback{}, errors.New("apprState is missing or too long")
	case len(cb.ApprNum) > 64:
		return PaySSamCallback{}, errors.New("apprNum is too long")
	case len(cb.APIKey) > 256:
		return PaySSamCallback{}, errors.New("apiKey is too long")
	}
	return cb, nil
}

func validPaySSamBillID(id string) bool {
	if id == "" || len(id) > payssam.BillIDLen {
		return false
	}
	for _, r := range id {
		if !(r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
			return false
		}
	}
	return true
}

// ParseAllowList reads a comma-separated list of IP addresses and CIDR
// prefixes (PAYFLOW_PAYSSAM_ALLOW_FROM); empty allows every source.
func ParseAllowList(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range splitComma(s) {
		if p, err := netip.ParsePrefix(f); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(f)
		if err != nil {
			return nil, errors.New("allow-list: " + strconv.Quote(f) + " is neither an IP address nor a CIDR prefix")
		}
		out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
	}
	return out, nil
}

func splitComma(s string) []string {
	var out []string
	start := 0
	for i := 0; i <= len(s); i++ {
		if i == len(s) || s[i] == ',' || s[i] == ' ' {
			if f := s[start:i]; f != "" {
				out = append(out, f)
			}
			start = i + 1
		}
	}
	return out
}

func (h *PaySSam) allowed(remote string) bool {
	if len(h.AllowFrom) == 0 {
		return true
	}
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		host = remote
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return false
	}
	a = a.Unmap()
	for _, p := range h.AllowFrom {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

func (h *PaySSam) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	log := h.Logger
	if log == nil {
		log = slog.Default()
	}
	answer := func(result string, status int, body string) {
		if h.Observer != nil {
			h.Observer.Callback(ProviderPaySSam, result)
		}
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}
	ack := func(result string) { answer(result, http.StatusOK, PaySSamAck) }
	retry := func(result string) { answer(result, http.StatusServiceUnavailable, paySSamRetry) }

	if !h.allowed(r.RemoteAddr) {
		log.Warn("payssam callback from a source outside the allow-list; ignored", "remote", r.RemoteAddr)
		answer("forbidden_source", http.StatusForbidden, `{"code":"FORBIDDEN","msg":"source not allowed"}`)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBody))
	if tooLarge := (*http.MaxBytesError)(nil); errors.As(err, &tooLarge) {
		answer("too_large", http.StatusRequestEntityTooLarge, `{"code":"VALIDATION","msg":"body too large"}`)
		return
	} else if err != nil {
		answer("unreadable", http.StatusBadRequest, `{"code":"VALIDATION","msg":"body unreadable"}`)
		return
	}
	cb, err := ParsePaySSamCallback(body)
	if err != nil {
		log.Warn("payssam callback is not a callback; ignored", "err", err)
		answer("invalid", http.StatusBadRequest, `{"code":"VALIDATION","msg":"not a callback"}`)
		return
	}
	if cb.APIKey != "" && h.APIKey != "" && subtle.ConstantTimeCompare([]byte(cb.APIKey), []byte(h.APIKey)) != 1 {
		log.Warn("payssam callback with another apiKey than ours; ignored", "payssam_bill_id", cb.BillID)
		answer("bad_api_key", http.StatusUnauthorized, `{"code":"PARTNER_003","msg":"apiKey mismatch"}`)
		return
	}
	logger := log.With("payssam_bill_id", cb.BillID, "appr_state", cb.State, "appr_num", cb.ApprNum)
	if cb.State != payssam.StatePaid {
		// PaySSam documents callbacks of payments only; anything else is
		// not a payment, and reconciliation follows the bill's state.
		logger.Info("payssam callback that reports no payment; nothing to settle")
		ack("ignored")
		return
	}
	ctx := r.Context()
	// payflow's bill ids are UUIDv7s, whose PaySSam ids lead back to
	// their first characters; any other PaySSam id names no bill of
	// payflow's and costs no query.
	var bill payflow.Bill
	if prefix, ok := payssam.UUIDPrefix(cb.BillID); ok {
		candidates, err := h.Bills(ctx, prefix)
		if err != nil {
			logger.Error("payssam callback: bill look-up in the database failed", "err", err)
			retry("error")
			return
		}
		for _, b := range candidates {
			if payssam.BillID(b.BillID) == cb.BillID {
				bill = b
				break
			}
		}
	}
	switch {
	case bill.BillID == "":
		// Not ours: nothing to settle. Every bill of ours is stored
		// before the PG hears of it, so it would have been found.
		logger.Warn("payssam callback for an unknown bill; not settled")
		ack("unknown_bill")
		return
	case bill.Status == payflow.BillPending:
		// Settling now would publish payment.settled before
		// charge.processed: PaySSam sends it again, and reconciliation
		// settles it if it does not.
		logger.Info("payssam callback for a bill whose placement is still being recorded; asked again later", "bill_id", bill.BillID)
		retry("not_ready")
		return
	case !bill.Status.Settleable() && !bill.Status.ContradictedBy(payflow.SettlePaid):
		logger.Info("payssam callback for a settled bill; nothing to do", "bill_id", bill.BillID, "status", bill.Status)
		ack("duplicate")
		return
	}
	// A bill held declined, cancelled or expired is looked up too: if
	// PaySSam confirms it paid, the customer's money was taken with no
	// result here, and Settle raises the alarm (ContradictedBy). The
	// callback's price is a hint like the rest of it: the lookup's amount
	// decides, so a forged price neither refuses a payment nor raises a
	// false alarm.
	if cb.Price != 0 && cb.Price != bill.Amount {
		logger.Warn("payssam callback amount differs from the bill; the lookup decides", "bill_id", bill.BillID, "amount", cb.Price, "bill_amount", bill.Amount)
	}
	p, err := h.PG.LookupPayment(ctx, bill.BillID)
	switch {
	case err != nil && pgclient.KindOf(err) == pgclient.KindNotFound:
		logger.Error("payssam callback for a bill PaySSam does not know; not settled", "bill_id", bill.BillID)
		ack("unconfirmed")
		return
	case err != nil:
		logger.Warn("payssam callback: the bill look-up failed; PaySSam will send it again", "bill_id", bill.BillID, "err", err)
		retry("lookup_failed")
		return
	case p.Status != pgclient.StatusPaid || p.Refunded != 0:
		logger.Error("payssam callback not confirmed: PaySSam's lookup does not report the bill paid; not settled",
			"bill_id", bill.BillID, "pg_status", p.Status, "refunded", p.Refunded)
		ack("unconfirmed")
		return
	case p.Amount != bill.Amount:
		logger.Error("payssam lookup amount differs from the bill; not settled", "bill_id", bill.BillID, "pg_amount", p.Amount, "bill_amount", bill.Amount)
		ack("amount_mismatch")
		return
	}
	// One receipt per bill: PaySSam reports a bill's payment once (and
	// again only on its retries), so the bill id is the idempotency key.
	out, err := h.Settler.Settle(ctx, payflow.Settlement{BillID: bill.BillID, Status: payflow.SettlePaid, Amount: p.Amount,
		PGTxID: p.PGTxID, Provider: ProviderPaySSam, WebhookID: cb.BillID})
	switch {
	case errors.Is(err, payflow.ErrNotFound):
		logger.Warn("payssam callback for an unknown bill; not settled")
		ack("unknown_bill")
	case errors.Is(err, payflow.ErrAmountMismatch):
		logger.Error("payssam confirmed amount differs from the bill; not settled", "bill_id", bill.BillID, "amount", p.Amount)
		ack("amount_mismatch")
	case errors.Is(err, payflow.ErrNotPlacedYet):
		retry("not_ready")
	case err != nil:
		logger.Error("payssam callback settlement failed; PaySSam will send it again", "bill_id", bill.BillID, "err", err)
		retry("error")
	default:
		ack(string(out))
	}
}
