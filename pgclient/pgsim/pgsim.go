// Package pgsim is a payment gateway simulator speaking the HTTP protocol of
// pgclient.HTTPClient. It keeps bills and refunds in memory, sends signed
// Standard Webhooks with the final result of each bill (retrying like a real
// PG), injects latency and faults, and records every operation it executed
// in a ledger (GET /sim/ledger) so tests can prove no bill was charged
// twice. `payflow dev`, `demo`, `bench` and `pgsim` run it.
package pgsim

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/google/uuid"

	"github.com/payflow/payflow/pgclient"
	"github.com/payflow/payflow/stdwebhook"
)

// Config configures the simulator.
type Config struct {
	// Latency is added to every operation.
	Latency time.Duration
	// ErrorRate (0..1) answers 503 without executing.
	ErrorRate float64
	// TimeoutRate (0..1) executes the operation, then holds the answer for
	// TimeoutHold: the caller times out not knowing the outcome.
	TimeoutRate float64
	TimeoutHold time.Duration

	// CallbackURL receives the webhooks; none are sent when empty.
	CallbackURL string
	// WebhookSecret ("whsec_…") signs them.
	WebhookSecret string
	// WebhookDropRate (0..1) loses a notification entirely.
	WebhookDropRate float64
	// WebhookMaxElapsed bounds the retries of one notification.
	WebhookMaxElapsed time.Duration

	// SettleDelay is when an accepted auto-pay becomes paid.
	SettleDelay time.Duration
	// KakaoPayDelay is when the simulated customer pays a KakaoTalk bill;
	// zero means never (the bill waits for destruction or expiry). A
	// customer whose phone ends in 0000 never pays, so unpaid bills can be
	// staged on purpose.
	KakaoPayDelay time.Duration
	// BillTTL expires unpaid KakaoTalk bills; zero means never.
	BillTTL time.Duration
	// PublicURL is the base of bill pay URLs.
	PublicURL string

	Logger *slog.Logger
}

// Operation names, as in the ledger and FailNext.
const (
	OpAutoPay   = "auto_pay"
	OpKakaoBill = "kakao_bill"
	OpBillURL   = "bill_url"
	OpLookup    = "lookup"
	OpRefund    = "refund"
	OpDestroy   = "destroy"
	OpSettle    = "settle" // a bill reaching its final status
)

// FaultMode is a deterministic failure for tests.
type FaultMode int

const (
	// FaultUnavailable answers 503 without executing.
	FaultUnavailable FaultMode = iota + 1
	// FaultTimeoutAfterExecute executes, then never answers in time.
	FaultTimeoutAfterExecute
	// FaultInternalAfterExecute executes, then answers 500.
	FaultInternalAfterExecute
)

// Entry is one executed operation.
type Entry struct {
	Op       string    `json:"op"`
	BillID   string    `json:"bill_id,omitempty"`
	RefundID string    `json:"refund_id,omitempty"`
	Amount   int64     `json:"amount,omitempty"`
	Outcome  string    `json:"outcome"`
	At       time.Time `json:"at"`
}

type bill struct {
	pgclient.Payment
	phone     string
	expiresAt time.Time
}

type refund struct {
	req pgclient.RefundRequest
	res pgclient.Refunded
}

// Sim is the simulator.
type Sim struct {
	cfg    Config
	log    *slog.Logger
	secret stdwebhook.Secret
	client *http.Client

	mu      sync.Mutex
	bills   map[string]*bill
	refunds map[string]*refund
	ledger  []Entry
	calls   map[string]int
	faults  map[string][]FaultMode

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// New returns a simulator. Close stops its timers and webhook senders.
func New(cfg Config) (*Sim, error) {
	if cfg.TimeoutHold <= 0 {
		cfg.TimeoutHold = 30 * time.Second
	}
	if cfg.WebhookMaxElapsed <= 0 {
		cfg.WebhookMaxElapsed = time.Minute
	}
	if cfg.SettleDelay <= 0 {
		cfg.SettleDelay = 200 * time.Millisecond
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	s := &Sim{cfg: cfg, log: cfg.Logger, client: &http.Client{Timeout: 10 * time.Second},
		bills: map[string]*bill{}, refunds: map[string]*refund{}, calls: map[string]int{}, faults: map[string][]FaultMode{}}
	if cfg.CallbackURL != "" {
		secrets, err := stdwebhook.ParseSecrets(cfg.WebhookSecret)
		if err != nil {
			return nil, fmt.Errorf("pgsim: webhook secret: %w", err)
		}
		s.secret = secrets[0]
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	return s, nil
}

// Close stops pending settlements and webhook deliveries.
func (s *Sim) Close() {
	s.cancel()
	s.wg.Wait()
}

// FailNext makes the next n calls of op fail with mode.
func (s *Sim) FailNext(op string, mode FaultMode, n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := 0; i < n; i++ {
		s.faults[op] = append(s.faults[op], mode)
	}
}

// Calls is how many requests of op arrived (executed or not).
func (s *Sim) Calls(op string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[op]
}

// Ledger returns a copy of every executed operation.
func (s *Sim) Ledger() []Entry {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Entry(nil), s.ledger...)
}

// Charged is how many times a bill was accepted at the PG: more than one
// would be a double charge (the simulator itself refuses it; payflow must
// never try).
func (s *Sim) Charged(billID string) int {
	n := 0
	for _, e := range s.Ledger() {
		if e.BillID == billID && (e.Op == OpAutoPay || e.Op == OpKakaoBill) && e.Outcome == "accepted" {
			n++
		}
	}
	return n
}

func (s *Sim) record(e Entry) {
	e.At = time.Now().UTC()
	s.ledger = append(s.ledger, e)
}

// Handler serves the PG protocol and the simulator's own endpoints.
func (s *Sim) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/payments/auto-pay", s.op(OpAutoPay, s.autoPay))
	mux.HandleFunc("POST /v1/bills/kakao", s.op(OpKakaoBill, s.kakaoBill))
	mux.HandleFunc("POST /v1/bills/url", s.op(OpBillURL, s.billURL))
	mux.HandleFunc("POST /v1/payments/lookup", s.op(OpLookup, s.lookup))
	mux.HandleFunc("POST /v1/refunds", s.op(OpRefund, s.refund))
	mux.HandleFunc("POST /v1/bills/destroy", s.op(OpDestroy, s.destroy))
	mux.HandleFunc("GET /sim/ledger", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, http.StatusOK, s.Ledger()) })
	mux.HandleFunc("GET /pay/{bill}", s.payPage)
	return mux
}

// apiError is the simulator's error answer.
type apiError struct {
	status int
	kind   pgclient.Kind
	code   string
	msg    string
}

type handler func(body []byte) (any, *apiError)

// op wraps an operation with latency, faults and the common error shape.
func (s *Sim) op(name string, h handler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.calls[name]++
		var fault FaultMode
		if q := s.faults[name]; len(q) > 0 {
			fault, s.faults[name] = q[0], q[1:]
		} else if s.cfg.ErrorRate > 0 && rand.Float64() < s.cfg.ErrorRate {
			fault = FaultUnavailable
		} else if s.cfg.TimeoutRate > 0 && rand.Float64() < s.cfg.TimeoutRate {
			fault = FaultTimeoutAfterExecute
		}
		s.mu.Unlock()
		if !sleep(r.Context(), s.cfg.Latency) {
			return
		}
		if fault == FaultUnavailable {
			w.Header().Set("Retry-After", "0")
			writeError(w, &apiError{http.StatusServiceUnavailable, pgclient.KindTransient, "unavailable", "simulated outage"})
			return
		}
		body, err := readBody(r)
		if err != nil {
			writeError(w, &apiError{http.StatusBadRequest, pgclient.KindInvalid, "bad_request", err.Error()})
			return
		}
		res, aerr := h(body)
		switch fault {
		case FaultTimeoutAfterExecute:
			sleep(r.Context(), s.cfg.TimeoutHold)
			writeError(w, &apiError{http.StatusGatewayTimeout, pgclient.KindUnknown, "timeout", "simulated timeout after execution"})
			return
		case FaultInternalAfterExecute:
			writeError(w, &apiError{http.StatusInternalServerError, pgclient.KindUnknown, "internal", "simulated failure after execution"})
			return
		}
		if aerr != nil {
			writeError(w, aerr)
			return
		}
		writeJSON(w, http.StatusOK, res)
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

func readBody(r *http.Request) ([]byte, error) {
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(http.MaxBytesReader(nil, r.Body, 64<<10)); err != nil {
		return nil, errors.New("body too large or unreadable")
	}
	return buf.Bytes(), nil
}

func decode(body []byte, v any) *apiError {
	if err := json.Unmarshal(body, v); err != nil {
		return &apiError{http.StatusBadRequest, pgclient.KindInvalid, "bad_request", "body is not valid JSON"}
	}
	return nil
}

func invalidf(format string, a ...any) *apiError {
	return &apiError{http.StatusBadRequest, pgclient.KindInvalid, "invalid_request", fmt.Sprintf(format, a...)}
}

func validBill(id string, amount int64) *apiError {
	switch {
	case id == "" || len(id) > 128:
		return invalidf("bill_id is required")
	case amount <= 0 || amount > 100_000_000:
		return invalidf("amount out of range")
	}
	return nil
}

// declineOf maps the simulator's magic billing key prefixes to decline
// codes.
func declineOf(key string) string {
	for prefix, code := range map[string]string{"decline_": "declined", "expired_": "expired", "limit_": "limit_exceeded", "invalid_": "invalid_billing_key"} {
		if strings.HasPrefix(key, prefix) {
			return code
		}
	}
	return ""
}

func (s *Sim) autoPay(body []byte) (any, *apiError) {
	var req pgclient.AutoPayRequest
	if e := decode(body, &req); e != nil {
		return nil, e
	}
	if e := validBill(req.BillID, req.Amount); e != nil {
		return nil, e
	}
	if req.BillingKey == "" {
		return nil, invalidf("billing_key is required")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, dup := s.bills[req.BillID]; dup {
		s.record(Entry{Op: OpAutoPay, BillID: req.BillID, Amount: req.Amount, Outcome: "duplicate"})
		return nil, &apiError{http.StatusConflict, pgclient.KindDuplicate, "duplicate_bill", "bill_id already used"}
	}
	b := &bill{Payment: pgclient.Payment{BillID: req.BillID, Method: "auto_pay", Status: pgclient.StatusRequested, Amount: req.Amount, PGTxID: "pgtx_" + uuid.NewString()}}
	s.bills[req.BillID] = b
	if code := declineOf(req.BillingKey); code != "" {
		b.Status, b.Decline = pgclient.StatusFailed, code
		s.record(Entry{Op: OpAutoPay, BillID: req.BillID, Amount: req.Amount, Outcome: "declined:" + code})
		return nil, &apiError{http.StatusPaymentRequired, pgclient.KindDeclined, code, "payment method declined"}
	}
	s.record(Entry{Op: OpAutoPay, BillID: req.BillID, Amount: req.Amount, Outcome: "accepted"})
	s.after(s.cfg.SettleDelay, req.BillID, pgclient.StatusPaid)
	return pgclient.Accepted{BillID: req.BillID, PGTxID: b.PGTxID}, nil
}

func (s *Sim) kakaoBill(body []byte) (any, *apiError) {
	var req pgclient.KakaoBillRequest
	if e := decode(body, &req); e != nil {
		return nil, e
	}
	if e := validBill(req.BillID, req.Amount); e != nil {
		return nil, e
	}
	if req.Phone == "" {
		return nil, invalidf("phone is required")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, dup := s.bills[req.BillID]; dup {
		s.record(Entry{Op: OpKakaoBill, BillID: req.BillID, Amount: req.Amount, Outcome: "duplicate"})
		return nil, &apiError{http.StatusConflict, pgclient.KindDuplicate, "duplicate_bill", "bill_id already used"}
	}
	b := &bill{Payment: pgclient.Payment{BillID: req.BillID, Method: "kakao_bill", Status: pgclient.StatusRequested, Amount: req.Amount, PGTxID: "pgtx_" + uuid.NewString()}, phone: req.Phone}
	if s.cfg.BillTTL > 0 {
		b.expiresAt = time.Now().Add(s.cfg.BillTTL)
		s.after(s.cfg.BillTTL, req.BillID, pgclient.StatusExpired)
	}
	s.bills[req.BillID] = b
	s.record(Entry{Op: OpKakaoBill, BillID: req.BillID, Amount: req.Amount, Outcome: "accepted"})
	if s.cfg.KakaoPayDelay > 0 && !strings.HasSuffix(req.Phone, "0000") {
		s.after(s.cfg.KakaoPayDelay, req.BillID, pgclient.StatusPaid)
	}
	return pgclient.Accepted{BillID: req.BillID, PGTxID: b.PGTxID}, nil
}

type billIDBody struct {
	BillID string `json:"bill_id"`
}

func (s *Sim) billURL(body []byte) (any, *apiError) {
	var req billIDBody
	if e := decode(body, &req); e != nil {
		return nil, e
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.bills[req.BillID]
	if !ok {
		return nil, notFound()
	}
	s.record(Entry{Op: OpBillURL, BillID: req.BillID, Outcome: string(b.Status)})
	if b.Method != "kakao_bill" || b.Status != pgclient.StatusRequested {
		return nil, &apiError{http.StatusConflict, pgclient.KindConflict, "not_payable", "bill has no pay URL in its state"}
	}
	exp := b.expiresAt
	if exp.IsZero() {
		exp = time.Now().Add(24 * time.Hour)
	}
	return pgclient.BillURL{URL: strings.TrimSuffix(s.cfg.PublicURL, "/") + "/pay/" + req.BillID, ExpiresAt: exp.UTC()}, nil
}

func notFound() *apiError {
	return &apiError{http.StatusNotFound, pgclient.KindNotFound, "not_found", "no such bill"}
}

func (s *Sim) lookup(body []byte) (any, *apiError) {
	var req billIDBody
	if e := decode(body, &req); e != nil {
		return nil, e
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.bills[req.BillID]
	if !ok {
		s.record(Entry{Op: OpLookup, BillID: req.BillID, Outcome: "not_found"})
		return nil, notFound()
	}
	s.record(Entry{Op: OpLookup, BillID: req.BillID, Outcome: string(b.Status)})
	return b.Payment, nil
}

func (s *Sim) refund(body []byte) (any, *apiError) {
	var req pgclient.RefundRequest
	if e := decode(body, &req); e != nil {
		return nil, e
	}
	if req.RefundID == "" || req.Amount <= 0 {
		return nil, invalidf("refund_id and a positive amount are required")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if prev, ok := s.refunds[req.RefundID]; ok {
		if prev.req.BillID != req.BillID || prev.req.Amount != req.Amount {
			return nil, &apiError{http.StatusConflict, pgclient.KindDuplicate, "refund_id_reused", "refund_id already used for another refund"}
		}
		return prev.res, nil // idempotent: nothing refunded twice
	}
	b, ok := s.bills[req.BillID]
	if !ok {
		return nil, notFound()
	}
	if b.Status != pgclient.StatusPaid || b.Refunded+req.Amount > b.Amount {
		s.record(Entry{Op: OpRefund, BillID: req.BillID, RefundID: req.RefundID, Amount: req.Amount, Outcome: "conflict"})
		return nil, &apiError{http.StatusConflict, pgclient.KindConflict, "not_refundable", "bill is not paid or the amount exceeds what is refundable"}
	}
	b.Refunded += req.Amount
	res := pgclient.Refunded{RefundID: req.RefundID, Amount: req.Amount, RefundedTotal: b.Refunded, PGTxID: "pgrf_" + uuid.NewString()}
	s.refunds[req.RefundID] = &refund{req: req, res: res}
	s.record(Entry{Op: OpRefund, BillID: req.BillID, RefundID: req.RefundID, Amount: req.Amount, Outcome: "refunded"})
	return res, nil
}

func (s *Sim) destroy(body []byte) (any, *apiError) {
	var req billIDBody
	if e := decode(body, &req); e != nil {
		return nil, e
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.bills[req.BillID]
	if !ok {
		return nil, notFound()
	}
	switch b.Status {
	case pgclient.StatusCancelled:
		return struct{}{}, nil
	case pgclient.StatusRequested:
	default:
		s.record(Entry{Op: OpDestroy, BillID: req.BillID, Outcome: "conflict"})
		return nil, &apiError{http.StatusConflict, pgclient.KindConflict, "not_destroyable", "bill is " + string(b.Status)}
	}
	s.finalize(b, pgclient.StatusCancelled)
	s.record(Entry{Op: OpDestroy, BillID: req.BillID, Amount: b.Amount, Outcome: "cancelled"})
	return struct{}{}, nil
}

// payPage lets a person (or curl) pay a KakaoTalk bill in dev.
func (s *Sim) payPage(w http.ResponseWriter, r *http.Request) {
	if err := s.Settle(r.PathValue("bill"), pgclient.StatusPaid); err != nil {
		http.Error(w, err.Error(), http.StatusConflict)
		return
	}
	_, _ = w.Write([]byte("paid\n"))
}

// Settle forces a requested bill to a final status and sends its webhook,
// as a customer paying or the PG expiring it would.
func (s *Sim) Settle(billID string, status pgclient.PaymentStatus) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.bills[billID]
	if !ok {
		return errors.New("no such bill")
	}
	if b.Status != pgclient.StatusRequested {
		return fmt.Errorf("bill is %s", b.Status)
	}
	s.finalize(b, status)
	return nil
}

// after settles a bill later, unless something settled it first.
func (s *Sim) after(d time.Duration, billID string, status pgclient.PaymentStatus) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if !sleep(s.ctx, d) {
			return
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		if b := s.bills[billID]; b != nil && b.Status == pgclient.StatusRequested {
			s.finalize(b, status)
		}
	}()
}

// finalize moves a bill to its final status and notifies. Callers hold mu.
func (s *Sim) finalize(b *bill, status pgclient.PaymentStatus) {
	b.Status = status
	s.record(Entry{Op: OpSettle, BillID: b.BillID, Amount: b.Amount, Outcome: string(status)})
	s.notify(b.Payment)
}

// Notification is the webhook body.
type Notification struct {
	BillID     string    `json:"bill_id"`
	Status     string    `json:"status"`
	Amount     int64     `json:"amount"`
	PGTxID     string    `json:"pg_tx_id"`
	OccurredAt time.Time `json:"occurred_at"`
}

// notify sends the bill's webhook in the background, retrying non-2xx
// answers with backoff under one webhook id, as the spec asks of senders.
func (s *Sim) notify(p pgclient.Payment) {
	if s.cfg.CallbackURL == "" {
		return
	}
	if s.cfg.WebhookDropRate > 0 && rand.Float64() < s.cfg.WebhookDropRate {
		s.log.Info("pgsim: webhook dropped", "bill_id", p.BillID)
		return
	}
	body, _ := json.Marshal(Notification{BillID: p.BillID, Status: string(p.Status), Amount: p.Amount, PGTxID: p.PGTxID, OccurredAt: time.Now().UTC()})
	id := "msg_" + uuid.NewString()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		b := backoff.NewExponentialBackOff()
		b.InitialInterval = 200 * time.Millisecond
		b.MaxElapsedTime = s.cfg.WebhookMaxElapsed
		err := backoff.Retry(func() error {
			req, err := http.NewRequestWithContext(s.ctx, http.MethodPost, s.cfg.CallbackURL, bytes.NewReader(body))
			if err != nil {
				return backoff.Permanent(err)
			}
			req.Header = stdwebhook.Headers(s.secret, id, time.Now(), body)
			req.Header.Set("Content-Type", "application/json")
			resp, err := s.client.Do(req)
			if err != nil {
				return err
			}
			resp.Body.Close()
			if resp.StatusCode/100 != 2 {
				return fmt.Errorf("callback answered %d", resp.StatusCode)
			}
			return nil
		}, backoff.WithContext(b, s.ctx))
		if err != nil && s.ctx.Err() == nil {
			s.log.Warn("pgsim: webhook not delivered", "bill_id", p.BillID, "err", err)
		}
	}()
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, e *apiError) {
	writeJSON(w, e.status, map[string]any{"error": map[string]string{"kind": string(e.kind), "code": e.code, "message": e.msg}})
}
