package sim

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/payflow/payflow/payflow"
	"github.com/payflow/payflow/pgclient"
)

// PG is the simulated payment gateway. It keeps bills, refunds and a ledger
// of every operation it executed, and answers each call as the schedule's
// dice say: executed or not, answered or not, now or later. It is safe for
// concurrent use (the shared suite calls it in parallel); in a run, calls
// come one at a time.
type PG struct {
	mu       sync.Mutex
	bills    map[string]*pgBill
	refunds  map[string]pgclient.Refunded
	ledger   []Entry
	late     []lateCall
	webhooks []Webhook
	// fault decides the fate of a call; nil answers every call at once.
	fault func(op string) fault
	// calls counts the calls that reached the PG; past maxCalls the PG
	// refuses everything and runaway is set: some process calls without
	// end (a liveness bug), and the run must still come to an end.
	calls, maxCalls int
	runaway         bool
	// faulty, when set, says whether faults are on (an outage ends with
	// them).
	faulty func() bool
	// log, when set, is told of every operation the PG executes.
	log func(format string, a ...any)
	// after, when set, runs once a request has left its caller: the
	// simulation parks the caller there, waiting for the answer, and lets
	// the rest of the world move on.
	after func()
	step  func() int
}

type pgBill struct {
	pgclient.Payment
	merchant string
}

// Entry is one operation the PG executed.
type Entry struct {
	Step     int
	Op       string // auto_pay, kakao_bill, refund, destroy, settle
	BillID   string
	RefundID string
	Amount   int64
	Outcome  string // accepted, declined, refunded, cancelled, paid, expired
}

// Webhook is a final result the PG has to report.
type Webhook struct {
	ID     string
	BillID string
	Status pgclient.PaymentStatus
	Amount int64
	PGTxID string
}

// fault is what happens to one call.
type fault int

const (
	faultNone            fault = iota
	faultTransient             // refused before the PG acted
	faultUnknown               // no answer; the PG did not act
	faultUnknownExecuted       // no answer; the PG acted
	faultLate                  // no answer; the PG acts later, before the caller's lease ends
	faultCrashBefore           // the caller dies before its request leaves
	faultCrashAfter            // the PG acts; the caller dies before reading the answer
	faultOutage                // the caller cannot reach the PG for its next calls
)

var faultNames = [...]string{"none", "transient", "unknown", "unknown_executed", "late", "crash_before", "crash_after", "outage"}

func (f fault) String() string { return faultNames[f] }

// FaultKinds names every fault a run injects, as Result.Stats counts them.
var FaultKinds = []string{"fault_transient", "fault_unknown", "fault_unknown_executed", "fault_late", "fault_crash_before",
	"fault_crash_after", "fault_outage", "fault_key_blip", "fault_db_drop", "fault_db_answer_lost", "park_statement", "stall_past_lease",
	"fault_batch_drop", "fault_batch_answer_lost"}

// lateCall is a request in flight that the PG executes later.
type lateCall struct {
	op   string
	exec func()
}

// NewPG returns an empty PG that answers every call at once.
func NewPG() *PG {
	return &PG{bills: map[string]*pgBill{}, refunds: map[string]pgclient.Refunded{}, step: func() int { return 0 }}
}

// errCrashed is what a dead caller's calls see.
var errCrashed = errors.New("sim: the calling process died")

// Client returns a client whose calls are subject to the PG's faults;
// crash is called when a fault kills the caller, dead tells whether it has
// died (a dead process sends nothing).
func (pg *PG) Client(crash func(), dead func() bool) pgclient.Client {
	return &pgConn{pg: pg, crash: crash, dead: dead}
}

type pgConn struct {
	pg    *PG
	crash func()
	dead  func() bool
	// outage counts the calls this caller still cannot get through.
	outage int
}

// call runs exec under the fate the PG's fault function picks for op.
func (c *pgConn) call(ctx context.Context, op string, exec func() (any, error)) (any, error) {
	if err := ctx.Err(); err != nil {
		// The caller gave up before sending: retriable, after a look-up.
		return nil, &pgclient.Error{Op: op, Kind: pgclient.KindUnknown, Message: err.Error()}
	}
	if c.dead != nil && c.dead() {
		return nil, &pgclient.Error{Op: op, Kind: pgclient.KindTransient, Message: errCrashed.Error()}
	}
	c.pg.mu.Lock()
	c.pg.calls++
	over := c.pg.maxCalls > 0 && c.pg.calls > c.pg.maxCalls
	if over {
		c.pg.runaway = true
	}
	c.pg.mu.Unlock()
	if over {
		return nil, &pgclient.Error{Op: op, Kind: pgclient.KindTransient, Message: "sim: too many calls"}
	}
	if c.outage > 0 && (c.pg.faulty == nil || c.pg.faulty()) {
		c.outage--
		return nil, &pgclient.Error{Op: op, Kind: pgclient.KindTransient, Message: "unreachable (simulated outage)"}
	}
	f := faultNone
	if c.pg.fault != nil {
		f = c.pg.fault(op)
	}
	unknown := &pgclient.Error{Op: op, Kind: pgclient.KindUnknown, Message: "timeout (" + f.String() + ")"}
	var v any
	var err error
	switch f {
	case faultTransient:
		return nil, &pgclient.Error{Op: op, Kind: pgclient.KindTransient, Message: "unavailable (simulated)"}
	case faultOutage:
		c.outage = 30
		return nil, &pgclient.Error{Op: op, Kind: pgclient.KindTransient, Message: "unreachable (simulated outage)"}
	case faultCrashBefore:
		c.crash()
		return nil, unknown
	case faultCrashAfter:
		_, _ = exec()
		c.crash()
		return nil, unknown
	case faultUnknown:
		v, err = nil, unknown
	case faultUnknownExecuted:
		_, _ = exec()
		v, err = nil, unknown
	case faultLate:
		c.pg.mu.Lock()
		c.pg.late = append(c.pg.late, lateCall{op: op, exec: func() { _, _ = exec() }})
		c.pg.mu.Unlock()
		v, err = nil, unknown
	default:
		v, err = exec()
	}
	// The request is out; the caller waits for the answer while the rest
	// of the world moves on. A caller that died meanwhile never reads it.
	if c.pg.after != nil {
		c.pg.after()
		if c.dead != nil && c.dead() {
			return nil, unknown
		}
	}
	return v, err
}

// Land executes every request still in flight. The simulation calls it
// before any lease expires: a request lands within its sender's lease.
func (pg *PG) Land() int {
	pg.mu.Lock()
	late := pg.late
	pg.late = nil
	pg.mu.Unlock()
	for _, l := range late {
		l.exec()
	}
	return len(late)
}

func (pg *PG) record(e Entry) {
	e.Step = pg.step()
	pg.ledger = append(pg.ledger, e)
	if pg.log != nil {
		pg.log("      pg executes %s %s%s %d: %s", e.Op, e.BillID, e.RefundID, e.Amount, e.Outcome)
	}
}

func (c *pgConn) place(ctx context.Context, op, billID, merchant string, amount int64, to, decline string) (pgclient.Accepted, error) {
	v, err := c.call(ctx, op, func() (any, error) {
		pg := c.pg
		pg.mu.Lock()
		defer pg.mu.Unlock()
		if billID == "" || amount <= 0 || amount > payflow.MaxAmount || to == "" {
			return nil, &pgclient.Error{Op: op, Kind: pgclient.KindInvalid, Code: "invalid_request"}
		}
		if _, dup := pg.bills[billID]; dup {
			return nil, &pgclient.Error{Op: op, Kind: pgclient.KindDuplicate, Code: "duplicate_bill_id"}
		}
		b := &pgBill{Payment: pgclient.Payment{BillID: billID, Method: op, Status: pgclient.StatusRequested, Amount: amount,
			PGTxID: "tx-" + billID}, merchant: merchant}
		pg.bills[billID] = b
		if decline != "" {
			b.Status, b.Decline = pgclient.StatusFailed, decline
			pg.record(Entry{Op: op, BillID: billID, Amount: amount, Outcome: "declined"})
			return nil, &pgclient.Error{Op: op, Kind: pgclient.KindDeclined, Code: decline}
		}
		pg.record(Entry{Op: op, BillID: billID, Amount: amount, Outcome: "accepted"})
		return pgclient.Accepted{BillID: billID, PGTxID: b.PGTxID}, nil
	})
	if err != nil {
		return pgclient.Accepted{}, err
	}
	return v.(pgclient.Accepted), nil
}

// AutoPay charges a billing key; keys that start with "decline_",
// "expired_" or "invalid_" are refused with that code.
func (c *pgConn) AutoPay(ctx context.Context, r pgclient.AutoPayRequest) (pgclient.Accepted, error) {
	decline := ""
	switch {
	case strings.HasPrefix(r.BillingKey, "decline_"):
		decline = "declined"
	case strings.HasPrefix(r.BillingKey, "expired_"):
		decline = "expired"
	case strings.HasPrefix(r.BillingKey, "limit_"):
		decline = "limit_exceeded"
	case strings.HasPrefix(r.BillingKey, "invalid_"):
		decline = "invalid_billing_key"
	}
	return c.place(ctx, "auto_pay", r.BillID, r.MerchantID, r.Amount, r.BillingKey, decline)
}

// SendKakaoBill sends a bill; a phone that ends in 0000 cannot receive
// KakaoTalk bills and is refused.
func (c *pgConn) SendKakaoBill(ctx context.Context, r pgclient.KakaoBillRequest) (pgclient.Accepted, error) {
	decline := ""
	if strings.HasSuffix(r.Phone, "0000") {
		decline = "declined"
	}
	return c.place(ctx, "kakao_bill", r.BillID, r.MerchantID, r.Amount, r.Phone, decline)
}

func (c *pgConn) BillURL(ctx context.Context, billID string) (pgclient.BillURL, error) {
	v, err := c.call(ctx, "bill_url", func() (any, error) {
		c.pg.mu.Lock()
		defer c.pg.mu.Unlock()
		b, ok := c.pg.bills[billID]
		if !ok {
			return nil, &pgclient.Error{Op: "bill_url", Kind: pgclient.KindNotFound}
		}
		if b.Status != pgclient.StatusRequested {
			return nil, &pgclient.Error{Op: "bill_url", Kind: pgclient.KindConflict, Message: "bill is " + string(b.Status)}
		}
		return pgclient.BillURL{URL: "https://pg.invalid/pay/" + billID, ExpiresAt: time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC)}, nil
	})
	if err != nil {
		return pgclient.BillURL{}, err
	}
	return v.(pgclient.BillURL), nil
}

func (c *pgConn) LookupPayment(ctx context.Context, billID string) (pgclient.Payment, error) {
	v, err := c.call(ctx, "lookup", func() (any, error) {
		c.pg.mu.Lock()
		defer c.pg.mu.Unlock()
		b, ok := c.pg.bills[billID]
		if !ok {
			return nil, &pgclient.Error{Op: "lookup", Kind: pgclient.KindNotFound}
		}
		return b.Payment, nil
	})
	if err != nil {
		return pgclient.Payment{}, err
	}
	return v.(pgclient.Payment), nil
}

func (c *pgConn) Refund(ctx context.Context, r pgclient.RefundRequest) (pgclient.Refunded, error) {
	v, err := c.call(ctx, "refund", func() (any, error) {
		pg := c.pg
		pg.mu.Lock()
		defer pg.mu.Unlock()
		if r.RefundID == "" || r.Amount <= 0 {
			return nil, &pgclient.Error{Op: "refund", Kind: pgclient.KindInvalid, Code: "invalid_request"}
		}
		if done, ok := pg.refunds[r.RefundID]; ok {
			if done.Amount != r.Amount {
				return nil, &pgclient.Error{Op: "refund", Kind: pgclient.KindDuplicate, Code: "refund_id_reused"}
			}
			return done, nil
		}
		b, ok := pg.bills[r.BillID]
		switch {
		case !ok:
			return nil, &pgclient.Error{Op: "refund", Kind: pgclient.KindNotFound}
		case b.Status != pgclient.StatusPaid || b.Refunded+r.Amount > b.Amount:
			return nil, &pgclient.Error{Op: "refund", Kind: pgclient.KindConflict, Code: "not_refundable"}
		}
		b.Refunded += r.Amount
		done := pgclient.Refunded{RefundID: r.RefundID, Amount: r.Amount, RefundedTotal: b.Refunded, PGTxID: "rf-tx-" + r.RefundID}
		pg.refunds[r.RefundID] = done
		pg.record(Entry{Op: "refund", BillID: r.BillID, RefundID: r.RefundID, Amount: r.Amount, Outcome: "refunded"})
		return done, nil
	})
	if err != nil {
		return pgclient.Refunded{}, err
	}
	return v.(pgclient.Refunded), nil
}

func (c *pgConn) DestroyBill(ctx context.Context, billID string) error {
	_, err := c.call(ctx, "destroy", func() (any, error) {
		pg := c.pg
		pg.mu.Lock()
		defer pg.mu.Unlock()
		b, ok := pg.bills[billID]
		switch {
		case !ok:
			return nil, &pgclient.Error{Op: "destroy", Kind: pgclient.KindNotFound}
		case b.Status == pgclient.StatusCancelled:
			return nil, nil
		case b.Status != pgclient.StatusRequested:
			return nil, &pgclient.Error{Op: "destroy", Kind: pgclient.KindConflict, Code: "not_destroyable"}
		}
		b.Status = pgclient.StatusCancelled
		pg.record(Entry{Op: "destroy", BillID: billID, Amount: b.Amount, Outcome: "cancelled"})
		return nil, nil
	})
	return err
}

// Settle moves a requested bill to a final status, as the customer, the
// card network or the PG's expiry would, and queues its webhook.
func (pg *PG) Settle(billID string, status pgclient.PaymentStatus) error {
	pg.mu.Lock()
	defer pg.mu.Unlock()
	b, ok := pg.bills[billID]
	if !ok || b.Status != pgclient.StatusRequested {
		return fmt.Errorf("sim: bill %s is not open at the PG", billID)
	}
	b.Status = status
	pg.record(Entry{Op: "settle", BillID: billID, Amount: b.Amount, Outcome: string(status)})
	pg.webhooks = append(pg.webhooks, Webhook{ID: fmt.Sprintf("wh-%d", len(pg.ledger)), BillID: billID, Status: status, Amount: b.Amount, PGTxID: b.PGTxID})
	return nil
}

// Open lists the bills the PG holds open (requested), sorted.
func (pg *PG) Open() []string {
	pg.mu.Lock()
	defer pg.mu.Unlock()
	var out []string
	for id, b := range pg.bills {
		if b.Status == pgclient.StatusRequested {
			out = append(out, id)
		}
	}
	sort.Strings(out)
	return out
}

// Bills returns a copy of every bill the PG holds, by id.
func (pg *PG) Bills() map[string]pgclient.Payment {
	pg.mu.Lock()
	defer pg.mu.Unlock()
	out := make(map[string]pgclient.Payment, len(pg.bills))
	for id, b := range pg.bills {
		out[id] = b.Payment
	}
	return out
}

// Ledger returns a copy of every operation the PG executed.
func (pg *PG) Ledger() []Entry {
	pg.mu.Lock()
	defer pg.mu.Unlock()
	return append([]Entry(nil), pg.ledger...)
}

// takeWebhook removes and returns the i-th pending webhook.
func (pg *PG) takeWebhook(i int) Webhook {
	pg.mu.Lock()
	defer pg.mu.Unlock()
	w := pg.webhooks[i]
	pg.webhooks = append(pg.webhooks[:i:i], pg.webhooks[i+1:]...)
	return w
}

func (pg *PG) pendingWebhooks() int {
	pg.mu.Lock()
	defer pg.mu.Unlock()
	return len(pg.webhooks)
}

func (pg *PG) requeueWebhook(w Webhook) {
	pg.mu.Lock()
	defer pg.mu.Unlock()
	pg.webhooks = append(pg.webhooks, w)
}

func (pg *PG) inFlight() int {
	pg.mu.Lock()
	defer pg.mu.Unlock()
	return len(pg.late)
}
