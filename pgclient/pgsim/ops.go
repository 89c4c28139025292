package pgsim

import (
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/payflow/payflow/payflow"
	"github.com/payflow/payflow/pgclient"
)

// declinePrefixes maps the magic billing key prefixes to decline codes
// (payflow.DeclineCode values).
var declinePrefixes = []struct{ prefix, code string }{
	{"decline_", "declined"},
	{"expired_", "expired"},
	{"limit_", "limit_exceeded"},
	{"invalid_", "invalid_billing_key"},
}

// DeclineKeys returns, for each decline code, a billing key the simulator
// refuses with it.
func DeclineKeys() map[string]string {
	m := make(map[string]string, len(declinePrefixes))
	for _, d := range declinePrefixes {
		m[d.code] = d.prefix + "card"
	}
	return m
}

func declineOf(key string) string {
	for _, d := range declinePrefixes {
		if strings.HasPrefix(key, d.prefix) {
			return d.code
		}
	}
	return ""
}

// invalidRecorded answers a request the PG refused as malformed and records
// it, so the ledger shows payflow sent it.
func (s *Sim) invalidRecorded(e Entry, aerr *apiError) *apiError {
	s.mu.Lock()
	defer s.mu.Unlock()
	e.Outcome = "invalid"
	s.record(e)
	return aerr
}

// open registers a new bill for the entry's operation, or refuses a reused
// bill id and executes nothing: the PG's own guard against charging one bill
// twice. Callers hold mu.
func (s *Sim) open(entry Entry) (*bill, *apiError) {
	if _, dup := s.bills[entry.BillID]; dup {
		entry.Outcome = OutcomeDuplicate
		s.record(entry)
		s.log.Warn("pgsim: bill id used again; nothing executed", "op", entry.Op, "bill_id", entry.BillID)
		return nil, &apiError{http.StatusConflict, pgclient.KindDuplicate, "duplicate_bill", "bill_id already used"}
	}
	b := &bill{Payment: pgclient.Payment{BillID: entry.BillID, Method: entry.Op, Status: pgclient.StatusRequested, Amount: entry.Amount, PGTxID: newTxID()}}
	s.bills[entry.BillID] = b
	return b, nil
}

func (s *Sim) autoPay(_ *http.Request, body []byte) (any, *apiError) {
	var req pgclient.AutoPayRequest
	if e := decode(body, &req); e != nil {
		return nil, e
	}
	return s.placeAutoPay(req, "", true, false)
}

// placeAutoPay places an auto-pay at store (the PaySSam store; empty in the
// reference protocol). declines: the magic billing keys refuse it. atOnce:
// the payment is approved in the call (the bill is paid when it returns)
// instead of SettleDelay later.
func (s *Sim) placeAutoPay(req pgclient.AutoPayRequest, store string, declines, atOnce bool) (pgclient.Accepted, *apiError) {
	entry := Entry{Op: OpAutoPay, BillID: req.BillID, Amount: req.Amount}
	if e := validBill(req.BillID, req.Amount); e != nil {
		return pgclient.Accepted{}, s.invalidRecorded(entry, e)
	}
	if req.BillingKey == "" || len(req.BillingKey) > 256 {
		return pgclient.Accepted{}, s.invalidRecorded(entry, invalidf("billing_key is required (at most 256 bytes)"))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	b, aerr := s.open(entry)
	if aerr != nil {
		return pgclient.Accepted{}, aerr
	}
	b.store = store
	if code := declineOf(req.BillingKey); declines && code != "" {
		// A refused auto-pay is still a bill the PG knows, so a caller that
		// lost the answer learns the decline by looking it up.
		b.Status, b.Decline = pgclient.StatusFailed, code
		entry.Outcome = "declined:" + code
		s.record(entry)
		s.log.Debug("pgsim: auto-pay declined", "bill_id", req.BillID, "code", code)
		return pgclient.Accepted{}, &apiError{http.StatusPaymentRequired, pgclient.KindDeclined, code, "payment method declined"}
	}
	entry.Outcome = OutcomeAccepted
	s.record(entry)
	s.log.Debug("pgsim: auto-pay accepted", "bill_id", req.BillID, "amount", req.Amount)
	switch {
	case atOnce:
		s.finalize(b, pgclient.StatusPaid)
	case s.cfg.SettleDelay > 0:
		s.schedule(b, s.cfg.SettleDelay, pgclient.StatusPaid)
	}
	return pgclient.Accepted{BillID: req.BillID, PGTxID: b.PGTxID}, nil
}

func (s *Sim) kakaoBill(_ *http.Request, body []byte) (any, *apiError) {
	var req pgclient.KakaoBillRequest
	if e := decode(body, &req); e != nil {
		return nil, e
	}
	return s.placeKakao(req, "")
}

// placeKakao places a KakaoTalk bill at store (the PaySSam store; empty in
// the reference protocol).
func (s *Sim) placeKakao(req pgclient.KakaoBillRequest, store string) (pgclient.Accepted, *apiError) {
	entry := Entry{Op: OpKakaoBill, BillID: req.BillID, Amount: req.Amount}
	if e := validBill(req.BillID, req.Amount); e != nil {
		return pgclient.Accepted{}, s.invalidRecorded(entry, e)
	}
	if req.Phone == "" || len(req.Phone) > 32 {
		return pgclient.Accepted{}, s.invalidRecorded(entry, invalidf("phone is required"))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	b, aerr := s.open(entry)
	if aerr != nil {
		return pgclient.Accepted{}, aerr
	}
	b.phone, b.store = req.Phone, store
	entry.Outcome = OutcomeAccepted
	s.record(entry)
	s.log.Debug("pgsim: KakaoTalk bill sent", "bill_id", req.BillID, "amount", req.Amount, "phone", payflow.MaskPhone(req.Phone))
	if s.cfg.BillTTL > 0 && s.cfg.Protocol != ProtocolPaySSam {
		b.expiresAt = time.Now().Add(s.cfg.BillTTL)
		s.schedule(b, s.cfg.BillTTL, pgclient.StatusExpired)
	}
	if s.cfg.KakaoPayDelay > 0 && !strings.HasSuffix(req.Phone, "0000") {
		s.schedule(b, s.cfg.KakaoPayDelay, pgclient.StatusPaid)
	}
	return pgclient.Accepted{BillID: req.BillID, PGTxID: b.PGTxID}, nil
}

type billIDBody struct {
	BillID string `json:"bill_id"`
}

func (s *Sim) billURL(r *http.Request, body []byte) (any, *apiError) {
	var req billIDBody
	if e := decode(body, &req); e != nil {
		return nil, e
	}
	return s.issueURL(req.BillID, s.publicBase(r))
}

// issueURL gives an unpaid KakaoTalk bill's pay URL on base.
func (s *Sim) issueURL(billID, base string) (pgclient.BillURL, *apiError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.bills[billID]
	if !ok {
		s.record(Entry{Op: OpBillURL, BillID: billID, Outcome: "not_found"})
		return pgclient.BillURL{}, notFound("bill")
	}
	if b.Method != "kakao_bill" || b.Status != pgclient.StatusRequested {
		s.record(Entry{Op: OpBillURL, BillID: billID, Outcome: "conflict"})
		return pgclient.BillURL{}, conflict("not_payable", "the bill is "+string(b.Status)+" and has no pay URL")
	}
	s.record(Entry{Op: OpBillURL, BillID: billID, Outcome: "issued"})
	exp := b.expiresAt
	if exp.IsZero() {
		exp = time.Now().Add(BillURLValidity)
	}
	return pgclient.BillURL{URL: base + "/pay/" + billID, ExpiresAt: exp.UTC().Truncate(time.Second)}, nil
}

// publicBase is where customers reach the simulator: configured, else the
// address the caller used.
func (s *Sim) publicBase(r *http.Request) string {
	if s.cfg.PublicURL != "" {
		return strings.TrimSuffix(s.cfg.PublicURL, "/")
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

func (s *Sim) lookup(_ *http.Request, body []byte) (any, *apiError) {
	var req billIDBody
	if e := decode(body, &req); e != nil {
		return nil, e
	}
	return s.lookupBill(req.BillID)
}

// lookupBill answers what the PG holds for a bill.
func (s *Sim) lookupBill(billID string) (pgclient.Payment, *apiError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.bills[billID]
	if !ok {
		s.record(Entry{Op: OpLookup, BillID: billID, Outcome: "not_found"})
		return pgclient.Payment{}, notFound("bill")
	}
	s.record(Entry{Op: OpLookup, BillID: billID, Outcome: string(b.Status)})
	return b.Payment, nil
}

func (s *Sim) refund(_ *http.Request, body []byte) (any, *apiError) {
	var req pgclient.RefundRequest
	if e := decode(body, &req); e != nil {
		return nil, e
	}
	return s.refundBill(req)
}

// refundBill checks a refund request, then refunds (refundLocked).
func (s *Sim) refundBill(req pgclient.RefundRequest) (pgclient.Refunded, *apiError) {
	entry := Entry{Op: OpRefund, BillID: req.BillID, RefundID: req.RefundID, Amount: req.Amount}
	if req.BillID == "" || req.RefundID == "" || len(req.RefundID) > 128 || req.Amount <= 0 || req.Amount > MaxAmount {
		return pgclient.Refunded{}, s.invalidRecorded(entry, invalidf("bill_id, refund_id and an amount within 1..%d are required", MaxAmount))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.refundLocked(req)
}

// refundLocked refunds with the reference protocol's rules: an idempotent
// refund id, a paid bill, never more than was paid. Callers hold mu.
func (s *Sim) refundLocked(req pgclient.RefundRequest) (pgclient.Refunded, *apiError) {
	entry := Entry{Op: OpRefund, BillID: req.BillID, RefundID: req.RefundID, Amount: req.Amount}
	if prev, ok := s.refunds[req.RefundID]; ok {
		if prev.req.BillID != req.BillID || prev.req.Amount != req.Amount {
			entry.Outcome = OutcomeDuplicate
			s.record(entry)
			return pgclient.Refunded{}, &apiError{http.StatusConflict, pgclient.KindDuplicate, "refund_id_reused", "refund_id already used for another refund"}
		}
		entry.Outcome = OutcomeReplayed
		s.record(entry)
		return prev.res, nil
	}
	b, ok := s.bills[req.BillID]
	if !ok {
		entry.Outcome = "not_found"
		s.record(entry)
		return pgclient.Refunded{}, notFound("bill")
	}
	if b.Status != pgclient.StatusPaid {
		entry.Outcome = "conflict"
		s.record(entry)
		return pgclient.Refunded{}, conflict("not_paid", "only a paid bill can be refunded; the bill is "+string(b.Status))
	}
	if b.Refunded+req.Amount > b.Amount {
		entry.Outcome = "conflict"
		s.record(entry)
		return pgclient.Refunded{}, conflict("exceeds_paid", fmt.Sprintf("refunds would total %d of %d paid", b.Refunded+req.Amount, b.Amount))
	}
	b.Refunded += req.Amount
	res := pgclient.Refunded{RefundID: req.RefundID, Amount: req.Amount, RefundedTotal: b.Refunded, PGTxID: "pgrf_" + uuid.NewString()}
	s.refunds[req.RefundID] = &refund{req: req, res: res}
	entry.Outcome = OutcomeRefunded
	s.record(entry)
	s.log.Debug("pgsim: refunded", "bill_id", req.BillID, "refund_id", req.RefundID, "amount", req.Amount, "refunded_total", b.Refunded)
	return res, nil
}

func (s *Sim) destroy(_ *http.Request, body []byte) (any, *apiError) {
	var req billIDBody
	if e := decode(body, &req); e != nil {
		return nil, e
	}
	if aerr := s.destroyBill(req.BillID); aerr != nil {
		return nil, aerr
	}
	return struct{}{}, nil
}

func (s *Sim) destroyBill(billID string) *apiError {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.destroyLocked(billID)
}

// destroyLocked cancels an unpaid bill; cancelled already is done. Callers
// hold mu.
func (s *Sim) destroyLocked(billID string) *apiError {
	req := billIDBody{BillID: billID}
	b, ok := s.bills[req.BillID]
	if !ok {
		s.record(Entry{Op: OpDestroy, BillID: req.BillID, Outcome: "not_found"})
		return notFound("bill")
	}
	switch b.Status {
	case pgclient.StatusCancelled:
		// Destroying twice is how a caller recovers from a lost answer.
		s.record(Entry{Op: OpDestroy, BillID: req.BillID, Outcome: "already_cancelled"})
		return nil
	case pgclient.StatusRequested:
		s.record(Entry{Op: OpDestroy, BillID: req.BillID, Amount: b.Amount, Outcome: "cancelled"})
		s.finalize(b, pgclient.StatusCancelled)
		return nil
	}
	s.record(Entry{Op: OpDestroy, BillID: req.BillID, Outcome: "conflict"})
	return conflict("not_destroyable", "only an unpaid bill can be destroyed; the bill is "+string(b.Status))
}
