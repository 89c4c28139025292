// Package pgsim owns the payment gateway simulator: an http.Handler speaking
// the protocol of pgclient.HTTPClient, which `payflow dev`, `demo`, `bench`
// and `pgsim` serve and tests run in-process. It keeps bills and refunds in
// memory with a real PG's guards (a bill id is accepted once, a refund id is
// idempotent, refunds never exceed what was paid), settles bills later and
// reports them by signed Standard Webhooks retried like a real PG's, injects
// latency and faults, and records every operation it executed in a ledger so
// that tests can prove no bill was charged twice.
//
// Besides the six PG operations (see pgclient.HTTPClient) it serves:
//
//	GET  /sim/ledger[?bill_id=&op=]  the ledger as a JSON array of Entry
//	GET  /sim/calls                  requests received per operation
//	POST /sim/settle                 {"bill_id","status"}: force a final status
//	POST /sim/fail-next              {"op","mode","n"}: inject faults
//	GET|POST /pay/{bill_id}          the simulated customer pays a bill
//	GET  /healthz
//
// Magic billing keys make auto-pay refuse: "decline_…" (declined),
// "expired_…" (expired), "limit_…" (limit_exceeded), "invalid_…"
// (invalid_billing_key). A KakaoTalk bill to a phone ending in 0000 is
// never paid by the simulated customer, so unpaid bills can be staged.
package pgsim

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/google/uuid"

	"github.com/payflow/payflow/payflow"
	"github.com/payflow/payflow/pgclient"
	"github.com/payflow/payflow/stdwebhook"
)

// Defaults of Config's zero values.
const (
	DefaultSettleDelay       = 200 * time.Millisecond
	DefaultTimeoutHold       = 30 * time.Second
	DefaultWebhookMaxElapsed = time.Minute
	DefaultWebhookTimeout    = 10 * time.Second
	// BillURLValidity is how long a pay URL is valid when bills do not
	// expire.
	BillURLValidity = 24 * time.Hour
	// MaxAmount is the largest amount the simulator accepts, as payflow's
	// contract.
	MaxAmount = 100_000_000
)

// Config configures the simulator. The zero value is a fast, faultless PG
// that sends no webhooks.
type Config struct {
	// Latency is added to every operation; a caller that gives up while
	// waiting leaves nothing executed.
	Latency time.Duration
	// ErrorRate (0..1) answers 503 without executing.
	ErrorRate float64
	// RetryAfter is sent with those 503s (whole seconds; 0 sends "0").
	RetryAfter time.Duration
	// TimeoutRate (0..1) executes the operation, then holds the answer
	// until the caller gives up or TimeoutHold (default 30 s) passes, and
	// answers 504: the caller cannot know the outcome.
	TimeoutRate float64
	TimeoutHold time.Duration

	// CallbackURL receives the webhooks; none are sent when empty.
	CallbackURL string
	// WebhookSecret ("whsec_…") signs them; required with CallbackURL.
	// When several are given (rotation), the first signs.
	WebhookSecret string
	// WebhookDropRate (0..1) loses a notification entirely: never sent, so
	// only a lookup finds the result.
	WebhookDropRate float64
	// WebhookMaxElapsed bounds the retries of one notification (default
	// 1 min); WebhookTimeout bounds one attempt (default 10 s).
	WebhookMaxElapsed time.Duration
	WebhookTimeout    time.Duration

	// SettleDelay is when an accepted auto-pay becomes paid (default
	// 200 ms). Negative: never by itself; Settle decides.
	SettleDelay time.Duration
	// KakaoPayDelay is when the simulated customer pays a KakaoTalk bill;
	// zero means never (the bill waits for DestroyBill, BillTTL or Settle).
	KakaoPayDelay time.Duration
	// BillTTL expires unpaid KakaoTalk bills; zero means never.
	BillTTL time.Duration
	// PublicURL is the base of bill pay URLs; by default the scheme and
	// host the request came to.
	PublicURL string
	// APIKey, when set, is required as "Authorization: Bearer <key>".
	APIKey string
	// Seed, when not zero, makes the random faults and drops reproducible.
	Seed uint64

	// Protocol is the PG protocol the handler speaks: ProtocolSim (the
	// default), payflow's reference protocol of pgclient.HTTPClient, or
	// ProtocolPaySSam, 결제선생 (PaySSam) partner API v2 as pgclient/payssam
	// speaks it (see payssam.go). Both run on the same bills and ledger.
	Protocol string
	// PaySSamMember and PaySSamStores, in the PaySSam protocol, are the
	// partner user code and the store (merchant) codes it knows; empty
	// accepts any. Its API key is APIKey, carried in the body.
	PaySSamMember string
	PaySSamStores []string

	Logger *slog.Logger
}

// Operation names, as in the ledger, Calls and FailNext.
const (
	OpAutoPay   = "auto_pay"
	OpKakaoBill = "kakao_bill"
	OpBillURL   = "bill_url"
	OpLookup    = "lookup"
	OpRefund    = "refund"
	OpDestroy   = "destroy"
	// OpSettle is a bill reaching its final status (ledger only).
	OpSettle = "settle"
	// OpWebhook is the fate of one notification: delivered, undelivered or
	// dropped (ledger only).
	OpWebhook = "webhook"
)

// Ledger outcomes with a meaning tests rely on.
const (
	OutcomeAccepted  = "accepted"  // a bill was placed: the only outcome that charges
	OutcomeDuplicate = "duplicate" // a bill or refund id was used again and nothing was done
	OutcomeRefunded  = "refunded"  // money was returned
	OutcomeReplayed  = "replayed"  // a refund id was repeated and the first answer returned
)

// FaultMode is a deterministic failure for tests.
type FaultMode int

const (
	// FaultUnavailable answers 503 without executing.
	FaultUnavailable FaultMode = iota + 1
	// FaultTimeoutAfterExecute executes, then answers only after the caller
	// gave up (or TimeoutHold).
	FaultTimeoutAfterExecute
	// FaultInternalAfterExecute executes, then answers 500.
	FaultInternalAfterExecute
)

var faultNames = map[FaultMode]string{
	FaultUnavailable:          "unavailable",
	FaultTimeoutAfterExecute:  "timeout_after_execute",
	FaultInternalAfterExecute: "internal_after_execute",
}

func (m FaultMode) String() string {
	if n, ok := faultNames[m]; ok {
		return n
	}
	return "FaultMode(" + strconv.Itoa(int(m)) + ")"
}

// ParseFaultMode reads a FaultMode's String form.
func ParseFaultMode(s string) (FaultMode, error) {
	for m, n := range faultNames {
		if n == s {
			return m, nil
		}
	}
	return 0, fmt.Errorf("pgsim: unknown fault mode %q", s)
}

// Entry is one executed operation or bill event.
type Entry struct {
	Op        string    `json:"op"`
	BillID    string    `json:"bill_id,omitempty"`
	RefundID  string    `json:"refund_id,omitempty"`
	Amount    int64     `json:"amount,omitempty"`
	Outcome   string    `json:"outcome"`
	WebhookID string    `json:"webhook_id,omitempty"`
	Attempts  int       `json:"attempts,omitempty"`
	At        time.Time `json:"at"`
}

// Notification is the webhook body.
type Notification struct {
	BillID     string    `json:"bill_id"`
	Status     string    `json:"status"`
	Amount     int64     `json:"amount"`
	PGTxID     string    `json:"pg_tx_id"`
	OccurredAt time.Time `json:"occurred_at"`
}

// Errors of Settle.
var (
	ErrNoSuchBill  = errors.New("pgsim: no such bill")
	ErrBillIsFinal = errors.New("pgsim: the bill already has a final status")
	ErrNotFinal    = errors.New("pgsim: not a final status (paid, failed, cancelled, expired)")
)

type bill struct {
	pgclient.Payment
	phone     string
	store     string // the PaySSam store the bill belongs to
	expiresAt time.Time
	timers    []*time.Timer
}

type refund struct {
	req pgclient.RefundRequest
	res pgclient.Refunded
}

// Sim is the simulator. Its methods are safe for concurrent use.
type Sim struct {
	cfg    Config
	log    *slog.Logger
	secret stdwebhook.Secret
	client *http.Client

	mu       sync.Mutex
	rng      *rand.Rand
	bills    map[string]*bill
	refunds  map[string]*refund
	ledger   []Entry
	accepted map[string]int
	calls    map[string]int
	faults   map[string][]FaultMode
	closed   bool

	ctx    context.Context // cancelled by Close: stops webhook deliveries
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// New returns a simulator; it fails only on a bad configuration. Close
// stops its timers and webhook deliveries.
func New(cfg Config) (*Sim, error) {
	for name, r := range map[string]float64{"ErrorRate": cfg.ErrorRate, "TimeoutRate": cfg.TimeoutRate, "WebhookDropRate": cfg.WebhookDropRate} {
		if r < 0 || r > 1 {
			return nil, fmt.Errorf("pgsim: %s must be within 0..1", name)
		}
	}
	switch cfg.Protocol {
	case "", ProtocolSim, ProtocolPaySSam:
	default:
		return nil, fmt.Errorf("pgsim: unknown protocol %q (%s or %s)", cfg.Protocol, ProtocolSim, ProtocolPaySSam)
	}
	if cfg.TimeoutHold <= 0 {
		cfg.TimeoutHold = DefaultTimeoutHold
	}
	if cfg.WebhookMaxElapsed <= 0 {
		cfg.WebhookMaxElapsed = DefaultWebhookMaxElapsed
	}
	if cfg.WebhookTimeout <= 0 {
		cfg.WebhookTimeout = DefaultWebhookTimeout
	}
	if cfg.SettleDelay == 0 {
		cfg.SettleDelay = DefaultSettleDelay
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	seed := cfg.Seed
	if seed == 0 {
		seed = rand.Uint64()
	}
	tr := pgclient.NewTransport()
	// Bound the notifications in flight towards one receiver; the rest
	// wait for a connection, as a real PG's queue would make them.
	tr.MaxConnsPerHost = 128
	s := &Sim{
		cfg: cfg, log: cfg.Logger,
		client: &http.Client{Transport: tr, Timeout: cfg.WebhookTimeout,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }},
		rng:   rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		bills: map[string]*bill{}, refunds: map[string]*refund{}, accepted: map[string]int{},
		calls: map[string]int{}, faults: map[string][]FaultMode{},
	}
	if cfg.CallbackURL != "" && cfg.Protocol != ProtocolPaySSam {
		secrets, err := stdwebhook.ParseSecrets(cfg.WebhookSecret)
		if err != nil {
			return nil, fmt.Errorf("pgsim: webhook secret: %w", err)
		}
		s.secret = secrets[0]
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	return s, nil
}

// Close stops pending settlements and webhook deliveries and waits for the
// deliveries to end. The handler keeps answering; bills settled afterwards
// send no webhooks.
func (s *Sim) Close() {
	s.mu.Lock()
	s.closed = true
	for _, b := range s.bills {
		b.stopTimers()
	}
	s.mu.Unlock()
	s.cancel()
	s.wg.Wait()
	s.client.CloseIdleConnections()
}

// FailNext makes the next n requests of op fail with mode, before the
// random faults of the configuration are considered.
func (s *Sim) FailNext(op string, mode FaultMode, n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for range n {
		s.faults[op] = append(s.faults[op], mode)
	}
}

// Calls is how many requests of op arrived, executed or not.
func (s *Sim) Calls(op string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[op]
}

// Ledger returns a copy of every executed operation and bill event, in
// order.
func (s *Sim) Ledger() []Entry {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Entry(nil), s.ledger...)
}

// Charged is how many times a bill was accepted at the PG. The simulator
// itself never accepts a bill id twice, so anything above one is a bug of
// the simulator; a payflow that tries shows up as a "duplicate" entry.
func (s *Sim) Charged(billID string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.accepted[billID]
}

// Payment returns what the PG holds for a bill, without a ledger entry.
func (s *Sim) Payment(billID string) (pgclient.Payment, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.bills[billID]
	if !ok {
		return pgclient.Payment{}, false
	}
	return b.Payment, true
}

// Settle forces a requested bill to a final status and sends its webhook,
// as a customer paying, the card network refusing or the PG expiring it
// would.
func (s *Sim) Settle(billID string, status pgclient.PaymentStatus) error {
	switch status {
	case pgclient.StatusPaid, pgclient.StatusFailed, pgclient.StatusCancelled, pgclient.StatusExpired:
	default:
		return ErrNotFinal
	}
	if s.cfg.Protocol == ProtocolPaySSam && (status == pgclient.StatusFailed || status == pgclient.StatusExpired) {
		return fmt.Errorf("%w: %s", ErrNotInProtocol, status)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.bills[billID]
	if !ok {
		return ErrNoSuchBill
	}
	if b.Status != pgclient.StatusRequested {
		return fmt.Errorf("%w (%s)", ErrBillIsFinal, b.Status)
	}
	s.finalize(b, status)
	return nil
}

// record appends to the ledger and counts placements on the side, so that
// Charged stays cheap at benchmark scale. Callers hold mu.
func (s *Sim) record(e Entry) {
	e.At = time.Now().UTC()
	s.ledger = append(s.ledger, e)
	if (e.Op == OpAutoPay || e.Op == OpKakaoBill) && e.Outcome == OutcomeAccepted {
		s.accepted[e.BillID]++
	}
}

// Handler serves the PG protocol and the simulator's own endpoints.
func (s *Sim) Handler() http.Handler {
	mux := http.NewServeMux()
	if s.cfg.Protocol == ProtocolPaySSam {
		s.payssamRoutes(mux)
	} else {
		mux.HandleFunc("POST /v1/payments/auto-pay", s.op(OpAutoPay, s.autoPay))
		mux.HandleFunc("POST /v1/bills/kakao", s.op(OpKakaoBill, s.kakaoBill))
		mux.HandleFunc("POST /v1/bills/url", s.op(OpBillURL, s.billURL))
		mux.HandleFunc("POST /v1/payments/lookup", s.op(OpLookup, s.lookup))
		mux.HandleFunc("POST /v1/refunds", s.op(OpRefund, s.refund))
		mux.HandleFunc("POST /v1/bills/destroy", s.op(OpDestroy, s.destroy))
	}
	mux.HandleFunc("GET /sim/ledger", s.serveLedger)
	mux.HandleFunc("GET /sim/calls", func(w http.ResponseWriter, _ *http.Request) {
		s.mu.Lock()
		calls := maps.Clone(s.calls)
		s.mu.Unlock()
		writeJSON(w, http.StatusOK, calls)
	})
	mux.HandleFunc("POST /sim/settle", s.serveSettle)
	mux.HandleFunc("POST /sim/fail-next", s.serveFailNext)
	mux.HandleFunc("GET /pay/{bill_id}", s.payPage)
	mux.HandleFunc("POST /pay/{bill_id}", s.payPage)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	return mux
}

// apiError is the simulator's error answer.
type apiError struct {
	status int
	kind   pgclient.Kind
	code   string
	msg    string
}

type handler func(r *http.Request, body []byte) (any, *apiError)

// op wraps an operation with authentication, latency, faults and the common
// error shape.
func (s *Sim) op(name string, h handler) http.HandlerFunc {
	return s.opWith(name, h, writeJSON, writeError)
}

// opWith is op with the protocol's own answers: ok writes a result, fail an
// error (the faults' and the handler's alike).
func (s *Sim) opWith(name string, h handler, ok func(http.ResponseWriter, int, any), fail func(http.ResponseWriter, *apiError)) http.HandlerFunc {
	writeError, writeJSON := fail, ok
	return func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.calls[name]++
		s.mu.Unlock()
		if !s.authorized(r) {
			writeError(w, &apiError{http.StatusUnauthorized, pgclient.KindInvalid, "unauthorized", "missing or wrong API key"})
			return
		}
		// Read the body first: only then does the server notice a caller
		// that hangs up, which the sleeps below rely on.
		body, err := readBody(w, r)
		if err != nil {
			writeError(w, &apiError{http.StatusBadRequest, pgclient.KindInvalid, "bad_request", err.Error()})
			return
		}
		fault := s.nextFault(name)
		if !sleep(r.Context(), s.cfg.Latency) {
			return // the caller gave up before anything was executed
		}
		if fault == FaultUnavailable {
			s.log.Debug("pgsim: injected 503", "op", name)
			w.Header().Set("Retry-After", strconv.Itoa(int((s.cfg.RetryAfter+time.Second-1)/time.Second)))
			writeError(w, &apiError{http.StatusServiceUnavailable, pgclient.KindTransient, pgclient.CodeUnavailable, "simulated outage; nothing was executed"})
			return
		}
		res, aerr := h(r, body)
		switch fault {
		case FaultTimeoutAfterExecute:
			s.log.Debug("pgsim: holding the answer of an executed operation", "op", name)
			sleep(r.Context(), s.cfg.TimeoutHold)
			writeError(w, &apiError{http.StatusGatewayTimeout, pgclient.KindUnknown, "timeout", "simulated timeout after execution"})
			return
		case FaultInternalAfterExecute:
			s.log.Debug("pgsim: injected 500 after execution", "op", name)
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

func (s *Sim) authorized(r *http.Request) bool {
	if s.cfg.APIKey == "" || s.cfg.Protocol == ProtocolPaySSam {
		// PaySSam carries its key in the body: its handlers check it.
		return true
	}
	got := []byte(r.Header.Get("Authorization"))
	return subtle.ConstantTimeCompare(got, []byte("Bearer "+s.cfg.APIKey)) == 1
}

// nextFault takes a queued fault, else rolls the configured rates.
func (s *Sim) nextFault(op string) FaultMode {
	s.mu.Lock()
	defer s.mu.Unlock()
	if q := s.faults[op]; len(q) > 0 {
		s.faults[op] = q[1:]
		return q[0]
	}
	if s.cfg.ErrorRate > 0 && s.rng.Float64() < s.cfg.ErrorRate {
		return FaultUnavailable
	}
	if s.cfg.TimeoutRate > 0 && s.rng.Float64() < s.cfg.TimeoutRate {
		return FaultTimeoutAfterExecute
	}
	return 0
}

func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
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

func readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(http.MaxBytesReader(w, r.Body, 64<<10)); err != nil {
		return nil, errors.New("body too large or unreadable")
	}
	return buf.Bytes(), nil
}

func decode(body []byte, v any) *apiError {
	if err := json.Unmarshal(body, v); err != nil {
		return &apiError{http.StatusBadRequest, pgclient.KindInvalid, "bad_request", "body is not the expected JSON object"}
	}
	return nil
}

func invalidf(format string, a ...any) *apiError {
	return &apiError{http.StatusBadRequest, pgclient.KindInvalid, "invalid_request", fmt.Sprintf(format, a...)}
}

func notFound(what string) *apiError {
	return &apiError{http.StatusNotFound, pgclient.KindNotFound, "not_found", "no such " + what}
}

func conflict(code, msg string) *apiError {
	return &apiError{http.StatusConflict, pgclient.KindConflict, code, msg}
}

func validBill(id string, amount int64) *apiError {
	switch {
	case id == "" || len(id) > 128:
		return invalidf("bill_id is required (at most 128 bytes)")
	case amount <= 0 || amount > MaxAmount:
		return invalidf("amount must be within 1..%d", MaxAmount)
	}
	return nil
}

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
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.bills[req.BillID]
	if !ok {
		s.record(Entry{Op: OpBillURL, BillID: req.BillID, Outcome: "not_found"})
		return nil, notFound("bill")
	}
	if b.Method != "kakao_bill" || b.Status != pgclient.StatusRequested {
		s.record(Entry{Op: OpBillURL, BillID: req.BillID, Outcome: "conflict"})
		return nil, conflict("not_payable", "the bill is "+string(b.Status)+" and has no pay URL")
	}
	s.record(Entry{Op: OpBillURL, BillID: req.BillID, Outcome: "issued"})
	exp := b.expiresAt
	if exp.IsZero() {
		exp = time.Now().Add(BillURLValidity)
	}
	return pgclient.BillURL{URL: s.publicBase(r) + "/pay/" + req.BillID, ExpiresAt: exp.UTC().Truncate(time.Second)}, nil
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
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.bills[req.BillID]
	if !ok {
		s.record(Entry{Op: OpLookup, BillID: req.BillID, Outcome: "not_found"})
		return nil, notFound("bill")
	}
	s.record(Entry{Op: OpLookup, BillID: req.BillID, Outcome: string(b.Status)})
	return b.Payment, nil
}

func (s *Sim) refund(_ *http.Request, body []byte) (any, *apiError) {
	var req pgclient.RefundRequest
	if e := decode(body, &req); e != nil {
		return nil, e
	}
	entry := Entry{Op: OpRefund, BillID: req.BillID, RefundID: req.RefundID, Amount: req.Amount}
	if req.BillID == "" || req.RefundID == "" || len(req.RefundID) > 128 || req.Amount <= 0 || req.Amount > MaxAmount {
		return nil, s.invalidRecorded(entry, invalidf("bill_id, refund_id and an amount within 1..%d are required", MaxAmount))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	res, aerr := s.refundLocked(req)
	if aerr != nil {
		return nil, aerr
	}
	return res, nil
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
	s.mu.Lock()
	defer s.mu.Unlock()
	if aerr := s.destroyLocked(req.BillID); aerr != nil {
		return nil, aerr
	}
	return struct{}{}, nil
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

func (s *Sim) serveLedger(w http.ResponseWriter, r *http.Request) {
	bill, op := r.URL.Query().Get("bill_id"), r.URL.Query().Get("op")
	out := []Entry{}
	for _, e := range s.Ledger() {
		if (bill == "" || e.BillID == bill) && (op == "" || e.Op == op) {
			out = append(out, e)
		}
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Sim) serveSettle(w http.ResponseWriter, r *http.Request) {
	var req struct {
		BillID string                 `json:"bill_id"`
		Status pgclient.PaymentStatus `json:"status"`
	}
	body, err := readBody(w, r)
	if err != nil || json.Unmarshal(body, &req) != nil {
		writeError(w, invalidf("body must be {\"bill_id\",\"status\"}"))
		return
	}
	s.answerSettle(w, s.Settle(req.BillID, req.Status))
}

func (s *Sim) answerSettle(w http.ResponseWriter, err error) {
	switch {
	case err == nil:
		writeJSON(w, http.StatusOK, struct{}{})
	case errors.Is(err, ErrNoSuchBill):
		writeError(w, notFound("bill"))
	case errors.Is(err, ErrNotFinal):
		writeError(w, invalidf("%s", err.Error()))
	default:
		writeError(w, conflict("final", err.Error()))
	}
}

func (s *Sim) serveFailNext(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Op   string `json:"op"`
		Mode string `json:"mode"`
		N    int    `json:"n"`
	}
	body, err := readBody(w, r)
	if err != nil || json.Unmarshal(body, &req) != nil {
		writeError(w, invalidf("body must be {\"op\",\"mode\",\"n\"}"))
		return
	}
	mode, err := ParseFaultMode(req.Mode)
	switch {
	case err != nil:
		writeError(w, invalidf("mode must be unavailable, timeout_after_execute or internal_after_execute"))
		return
	case !validOp(req.Op):
		writeError(w, invalidf("op must be one of auto_pay, kakao_bill, bill_url, lookup, refund, destroy"))
		return
	case req.N < 1 || req.N > 10_000:
		writeError(w, invalidf("n must be within 1..10000"))
		return
	}
	s.FailNext(req.Op, mode, req.N)
	writeJSON(w, http.StatusOK, struct{}{})
}

func validOp(op string) bool {
	switch op {
	case OpAutoPay, OpKakaoBill, OpBillURL, OpLookup, OpRefund, OpDestroy:
		return true
	}
	return false
}

// payPage is the simulated customer paying a KakaoTalk bill: a person (or
// curl) following a bill URL in dev.
func (s *Sim) payPage(w http.ResponseWriter, r *http.Request) {
	err := s.Settle(r.PathValue("bill_id"), pgclient.StatusPaid)
	if err != nil {
		s.answerSettle(w, err)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write([]byte("paid\n"))
}

// schedule settles a bill later unless something settled it first. Timers
// rather than sleeping goroutines, because a benchmark keeps tens of
// thousands of bills waiting. Callers hold mu.
func (s *Sim) schedule(b *bill, d time.Duration, status pgclient.PaymentStatus) {
	if s.closed {
		return
	}
	b.timers = append(b.timers, time.AfterFunc(d, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if !s.closed && b.Status == pgclient.StatusRequested {
			s.finalize(b, status)
		}
	}))
}

func (b *bill) stopTimers() {
	for _, t := range b.timers {
		t.Stop()
	}
	b.timers = nil
}

// finalize moves a bill to its final status and notifies. Callers hold mu.
func (s *Sim) finalize(b *bill, status pgclient.PaymentStatus) {
	b.Status = status
	b.stopTimers()
	s.record(Entry{Op: OpSettle, BillID: b.BillID, Amount: b.Amount, Outcome: string(status)})
	s.log.Debug("pgsim: bill settled", "bill_id", b.BillID, "status", status)
	s.notify(b.Payment)
}

// notify sends the bill's webhook in the background. Retries of one
// notification keep its webhook id, which is the receiver's idempotency key;
// each attempt is signed afresh with its own timestamp, so a long retry
// series is not refused as stale. Callers hold mu.
func (s *Sim) notify(p pgclient.Payment) {
	if s.cfg.CallbackURL == "" || s.closed {
		return
	}
	id := "msg_" + uuid.NewString()
	if s.cfg.WebhookDropRate > 0 && s.rng.Float64() < s.cfg.WebhookDropRate {
		s.record(Entry{Op: OpWebhook, BillID: p.BillID, Amount: p.Amount, Outcome: "dropped", WebhookID: id})
		s.log.Info("pgsim: webhook dropped on purpose", "bill_id", p.BillID, "status", p.Status)
		return
	}
	body, _ := json.Marshal(Notification{BillID: p.BillID, Status: string(p.Status), Amount: p.Amount, PGTxID: p.PGTxID, OccurredAt: time.Now().UTC()})
	if s.cfg.Protocol == ProtocolPaySSam {
		// PaySSam calls back only for successful payments, unsigned.
		if p.Status != pgclient.StatusPaid {
			return
		}
		body = s.payssamCallback(p)
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		attempts, err := s.deliver(id, body)
		outcome := "delivered"
		if err != nil {
			outcome = "undelivered"
			if s.ctx.Err() == nil {
				s.log.Warn("pgsim: webhook not delivered; giving up", "bill_id", p.BillID, "webhook_id", id, "attempts", attempts, "err", err)
			}
		}
		s.mu.Lock()
		s.record(Entry{Op: OpWebhook, BillID: p.BillID, Amount: p.Amount, Outcome: outcome, WebhookID: id, Attempts: attempts})
		s.mu.Unlock()
	}()
}

// deliver posts one notification until a 2xx, retrying with exponential
// backoff within WebhookMaxElapsed.
func (s *Sim) deliver(id string, body []byte) (int, error) {
	b := backoff.NewExponentialBackOff()
	b.InitialInterval = 100 * time.Millisecond
	b.MaxInterval = 5 * time.Second
	b.MaxElapsedTime = s.cfg.WebhookMaxElapsed
	attempts := 0
	err := backoff.Retry(func() error {
		attempts++
		req, err := http.NewRequestWithContext(s.ctx, http.MethodPost, s.cfg.CallbackURL, bytes.NewReader(body))
		if err != nil {
			return backoff.Permanent(err)
		}
		if s.cfg.Protocol == ProtocolPaySSam {
			req.Header = http.Header{}
		} else {
			req.Header = stdwebhook.Headers(s.secret, id, time.Now(), body)
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("User-Agent", "payflow-pgsim")
		resp, err := s.client.Do(req)
		if err != nil {
			return err
		}
		// Drained, the connection is reused for the next notification.
		answer, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			return fmt.Errorf("callback answered %d", resp.StatusCode)
		}
		if s.cfg.Protocol == ProtocolPaySSam && !payssamCallbackAnswered(answer) {
			return errors.New("callback answer is not PaySSam's required body")
		}
		return nil
	}, backoff.WithContext(b, s.ctx))
	return attempts, err
}

func newTxID() string { return "pgtx_" + uuid.NewString() }

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, e *apiError) {
	writeJSON(w, e.status, map[string]any{"error": map[string]string{"kind": string(e.kind), "code": e.code, "message": e.msg}})
}
