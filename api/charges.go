package api

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/payflow/payflow/payflow"
	"github.com/payflow/payflow/pgclient"
)

// urlMinValidity is how long a cached pay URL must still be valid to be
// handed out: a URL that dies while the customer opens it is no URL.
const urlMinValidity = time.Minute

type chargeJSON struct {
	MerchantID     string        `json:"merchant_id"`
	ChargeID       string        `json:"charge_id"`
	State          string        `json:"state"`
	BillID         string        `json:"bill_id"`
	BillStatus     string        `json:"bill_status"`
	Method         string        `json:"method"`
	FallbackReason string        `json:"fallback_reason,omitempty"`
	Amount         int64         `json:"amount"`
	PaidAmount     int64         `json:"paid_amount"`
	RefundedAmount int64         `json:"refunded_amount"`
	FailureReason  string        `json:"failure_reason,omitempty"`
	CreatedAt      time.Time     `json:"created_at"`
	UpdatedAt      time.Time     `json:"updated_at"`
	History        historyJSON   `json:"history"`
	PGStatus       *pgStatusJSON `json:"pg_status,omitempty"`
	PGError        string        `json:"pg_error,omitempty"`
}

type historyJSON struct {
	Bills   []billJSON   `json:"bills"`
	Refunds []refundJSON `json:"refunds"`
}

type billJSON struct {
	BillID         string     `json:"bill_id"`
	Method         string     `json:"method"`
	Status         string     `json:"status"`
	Amount         int64      `json:"amount"`
	PaidAmount     int64      `json:"paid_amount"`
	RefundedAmount int64      `json:"refunded_amount"`
	FallbackReason string     `json:"fallback_reason,omitempty"`
	DeclineCode    string     `json:"decline_code,omitempty"`
	RepayID        string     `json:"repay_id,omitempty"`
	CreatedAt      time.Time  `json:"created_at"`
	SettledAt      *time.Time `json:"settled_at,omitempty"`
}

type refundJSON struct {
	RefundID      string    `json:"refund_id"`
	Kind          string    `json:"kind"`
	BillID        string    `json:"bill_id"`
	Amount        int64     `json:"amount"`
	Status        string    `json:"status"`
	FailureReason string    `json:"failure_reason,omitempty"`
	CreatedAt     time.Time `json:"created_at"`
	UpdatedAt     time.Time `json:"updated_at"`
}

// pgStatusJSON is what the PG holds for the current bill (결제정보조회).
type pgStatusJSON struct {
	Status         string `json:"status"`
	Amount         int64  `json:"amount"`
	RefundedAmount int64  `json:"refunded_amount"`
	PGTxID         string `json:"pg_tx_id,omitempty"`
	Decline        string `json:"decline,omitempty"`
}

func toChargeJSON(v payflow.ChargeView) chargeJSON {
	out := chargeJSON{
		MerchantID: v.MerchantID, ChargeID: v.ChargeID, State: string(v.State),
		BillID: v.BillID, BillStatus: string(v.BillStatus), Method: string(v.Method), FallbackReason: string(v.FallbackReason),
		Amount: v.Amount, PaidAmount: v.PaidAmount, RefundedAmount: v.RefundedAmount, FailureReason: v.FailureReason,
		CreatedAt: v.CreatedAt.UTC(), UpdatedAt: v.UpdatedAt.UTC(),
		History: historyJSON{Bills: make([]billJSON, 0, len(v.Bills)), Refunds: make([]refundJSON, 0, len(v.Refunds))},
	}
	for _, b := range v.Bills {
		bj := billJSON{BillID: b.BillID, Method: string(b.Method), Status: string(b.Status), Amount: b.Amount,
			PaidAmount: b.PaidAmount, RefundedAmount: b.RefundedAmount, FallbackReason: string(b.FallbackReason),
			DeclineCode: b.DeclineCode, RepayID: b.RepayID, CreatedAt: b.CreatedAt.UTC()}
		if b.SettledAt != nil {
			t := b.SettledAt.UTC()
			bj.SettledAt = &t
		}
		out.History.Bills = append(out.History.Bills, bj)
	}
	for _, r := range v.Refunds {
		out.History.Refunds = append(out.History.Refunds, refundJSON{RefundID: r.RefundID, Kind: r.Kind, BillID: r.BillID,
			Amount: r.Amount, Status: string(r.Status), FailureReason: r.FailureReason, CreatedAt: r.CreatedAt.UTC(), UpdatedAt: r.UpdatedAt.UTC()})
	}
	return out
}

// chargeID reads the path's charge id. One that breaks payflow's id rules
// cannot exist, so it is simply not found.
func chargeID(w http.ResponseWriter, r *http.Request) (string, bool) {
	id := r.PathValue("charge_id")
	if payflow.ValidID(id) != nil {
		writeError(w, http.StatusNotFound, "not_found", "no such charge")
		return "", false
	}
	return id, true
}

func (s *server) getCharge(w http.ResponseWriter, r *http.Request) {
	id, ok := chargeID(w, r)
	if !ok {
		return
	}
	// Another merchant's charge is not found, exactly like a missing one:
	// a merchant must not learn which charge ids others use.
	v, err := s.Store.ChargeView(r.Context(), merchantID(r), id)
	if errors.Is(err, payflow.ErrNotFound) {
		writeError(w, http.StatusNotFound, "not_found", "no such charge")
		return
	}
	if err != nil {
		s.internal(w, r, "charge view", err)
		return
	}
	out := toChargeJSON(v)
	if s.PG != nil && v.BillID != "" {
		ctx, cancel := context.WithTimeout(r.Context(), pgLookupTimeout)
		p, err := s.PG.LookupPayment(ctx, v.BillID)
		cancel()
		if err != nil {
			out.PGError = pgErrorCode(ctx, err)
			s.Logger.Warn("api: PG lookup failed; answering without pg_status", "bill_id", v.BillID, "pg_error", out.PGError)
		} else {
			out.PGStatus = &pgStatusJSON{Status: string(p.Status), Amount: p.Amount, RefundedAmount: p.Refunded,
				PGTxID: p.PGTxID, Decline: p.Decline}
		}
	}
	writeJSON(w, http.StatusOK, out)
}

// pgErrorCode names a PG failure for callers: its kind, or timeout.
func pgErrorCode(ctx context.Context, err error) string {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return "timeout"
	}
	return string(pgclient.KindOf(err))
}

type billURLJSON struct {
	BillID    string    `json:"bill_id"`
	URL       string    `json:"url"`
	ExpiresAt time.Time `json:"expires_at"`
}

func (s *server) billURL(w http.ResponseWriter, r *http.Request) {
	id, ok := chargeID(w, r)
	if !ok {
		return
	}
	b, err := s.Store.CurrentBill(r.Context(), merchantID(r), id)
	if errors.Is(err, payflow.ErrNotFound) {
		writeError(w, http.StatusNotFound, "not_found", "no such charge")
		return
	}
	if err != nil {
		s.internal(w, r, "current bill", err)
		return
	}
	if msg := notPayable(b.Bill); msg != "" {
		writeError(w, http.StatusConflict, "invalid_state", msg)
		return
	}
	if b.URL != "" && time.Until(b.URLExpiresAt) > urlMinValidity {
		writeJSON(w, http.StatusOK, billURLJSON{BillID: b.BillID, URL: b.URL, ExpiresAt: b.URLExpiresAt.UTC()})
		return
	}
	if s.PG == nil {
		writeError(w, http.StatusBadGateway, "pg_unavailable", "no PG is configured")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), pgBillURLTimeout)
	u, err := s.PG.BillURL(ctx, b.BillID)
	code := ""
	if err != nil {
		code = pgErrorCode(ctx, err)
	}
	cancel()
	switch {
	case err == nil && u.URL == "":
		s.Logger.Warn("api: the PG answered a bill URL request without a URL", "bill_id", b.BillID)
		writeError(w, http.StatusBadGateway, "pg_unavailable", "the PG gave no URL; try again")
		return
	case code == string(pgclient.KindConflict) || code == string(pgclient.KindNotFound):
		writeError(w, http.StatusConflict, "invalid_state", "the PG reports that the bill can no longer be paid")
		return
	case err != nil:
		s.Logger.Warn("api: PG bill URL failed", "bill_id", b.BillID, "pg_error", code)
		writeError(w, http.StatusBadGateway, "pg_unavailable", "the PG did not answer; try again")
		return
	}
	// Best effort: without the cache the next call asks the PG again.
	if err := s.Store.CacheBillURL(r.Context(), b.BillID, u.URL, u.ExpiresAt); err != nil {
		s.Logger.Warn("api: could not cache the bill URL", "bill_id", b.BillID, "err", err)
	}
	writeJSON(w, http.StatusOK, billURLJSON{BillID: b.BillID, URL: u.URL, ExpiresAt: u.ExpiresAt.UTC()})
}

// notPayable says why a bill has no pay URL, or "" when it has one: only an
// unpaid KakaoTalk bill the PG holds does.
func notPayable(b payflow.Bill) string {
	switch {
	case b.BillID == "":
		return "the charge has no bill"
	case b.Method != payflow.MethodKakaoBill:
		return "an auto-pay bill has no pay URL"
	case b.Status == payflow.BillPending:
		return "the bill is still being sent; try again shortly"
	case b.Status != payflow.BillRequested:
		return "the bill is " + string(b.Status) + " and can no longer be paid"
	}
	return ""
}
