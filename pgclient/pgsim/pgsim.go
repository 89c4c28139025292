// Package pgsim owns the payment gateway simulator: an http.Handler speaking
// the protocol of pgclient.HTTPClient, which `payflow dev`, `demo`, `bench`
// and `pgsim` serve and tests run in-process, and a Client that calls it
// without HTTP, for tests whose subject is not the wire. It keeps bills and
// refunds in memory with a real PG's guards (a bill id is accepted once, a
// refund id is idempotent, refunds never exceed what was paid), settles
// bills later and reports them by signed Standard Webhooks retried like a
// real PG's, injects latency and faults, and records every operation it
// executed in a ledger so that tests can prove no bill was charged twice.
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
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"time"

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
