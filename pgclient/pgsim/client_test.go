package pgsim_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/payflow/payflow/pgclient"
	"github.com/payflow/payflow/pgclient/pgclienttest"
	"github.com/payflow/payflow/pgclient/pgsim"
)

func newSim(t *testing.T, cfg pgsim.Config) *pgsim.Sim {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	sim, err := pgsim.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sim.Close)
	return sim
}

// The in-process client passes the suite every adapter must pass.
func TestInProcessClientSuite(t *testing.T) {
	sim := newSim(t, pgsim.Config{SettleDelay: -1})
	pgclienttest.Run(t, harness(sim, sim.Client()))
	for _, e := range sim.Ledger() {
		if n := sim.Charged(e.BillID); n > 1 {
			t.Fatalf("bill %s charged %d times", e.BillID, n)
		}
	}
}

// Both clients act on one PG: what one placed, the other sees, and the
// ledger and call counts hold both.
func TestInProcessAndHTTPClientsShareThePG(t *testing.T) {
	sim, overHTTP, url := start(t, pgsim.Config{SettleDelay: -1})
	inProcess := sim.Client()
	ctx := context.Background()
	if _, err := overHTTP.SendKakaoBill(ctx, pgclient.KakaoBillRequest{BillID: "b1", Phone: phone, Amount: 100}); err != nil {
		t.Fatal(err)
	}
	if _, err := inProcess.SendKakaoBill(ctx, pgclient.KakaoBillRequest{BillID: "b1", Phone: phone, Amount: 100}); pgclient.KindOf(err) != pgclient.KindDuplicate {
		t.Fatalf("a bill id placed over HTTP, again in-process: %v", err)
	}
	if p, err := inProcess.LookupPayment(ctx, "b1"); err != nil || p.Amount != 100 {
		t.Fatalf("lookup in-process: %+v %v", p, err)
	}
	// Pay URLs are where the simulator's customers pay: the address a
	// request came to, which an in-process call has none of.
	viaHTTP, err := overHTTP.BillURL(ctx, "b1")
	if err != nil || viaHTTP.URL != url+"/pay/b1" {
		t.Fatalf("bill url over HTTP: %+v %v", viaHTTP, err)
	}
	direct, err := inProcess.BillURL(ctx, "b1")
	if err != nil || direct.URL != pgsim.InProcessBase+"/pay/b1" || direct.ExpiresAt.Sub(viaHTTP.ExpiresAt).Abs() > time.Second {
		t.Fatalf("bill url in-process: %+v %v, over HTTP %+v", direct, err, viaHTTP)
	}
	if sim.Charged("b1") != 1 || sim.Calls(pgsim.OpKakaoBill) != 2 || sim.Calls(pgsim.OpLookup) != 1 || sim.Calls(pgsim.OpBillURL) != 2 {
		t.Fatalf("charged %d; calls: kakao %d, lookup %d, bill url %d", sim.Charged("b1"),
			sim.Calls(pgsim.OpKakaoBill), sim.Calls(pgsim.OpLookup), sim.Calls(pgsim.OpBillURL))
	}
	public := newSim(t, pgsim.Config{PublicURL: "https://pay.example/"}).Client()
	if _, err := public.SendKakaoBill(ctx, pgclient.KakaoBillRequest{BillID: "b1", Phone: phone, Amount: 100}); err != nil {
		t.Fatal(err)
	}
	if u, err := public.BillURL(ctx, "b1"); err != nil || u.URL != "https://pay.example/pay/b1" {
		t.Fatalf("bill url on a public URL: %+v %v", u, err)
	}
}

// The injected faults reach the in-process client as the HTTP adapter
// classifies them: an outage executes nothing and is transient with the
// PG's Retry-After; a timeout or an internal error after execution is
// unknown, and the operation happened.
func TestInProcessClientFaults(t *testing.T) {
	sim := newSim(t, pgsim.Config{SettleDelay: -1, RetryAfter: 1500 * time.Millisecond, TimeoutHold: 10 * time.Second})
	c := sim.Client()
	ctx := context.Background()

	sim.FailNext(pgsim.OpAutoPay, pgsim.FaultUnavailable, 1)
	_, err := c.AutoPay(ctx, pgclient.AutoPayRequest{BillID: "b1", BillingKey: "bk", Amount: 100})
	var e *pgclient.Error
	if !errors.As(err, &e) || e.Kind != pgclient.KindTransient || e.Code != pgclient.CodeUnavailable || e.Op != "auto_pay" || e.RetryAfter != 2*time.Second {
		t.Fatalf("outage: %#v, want transient with Retry-After 2s", err)
	}
	if sim.Charged("b1") != 0 || len(sim.Ledger()) != 0 {
		t.Fatalf("an outage executed: %+v", sim.Ledger())
	}

	sim.FailNext(pgsim.OpAutoPay, pgsim.FaultInternalAfterExecute, 1)
	if _, err := c.AutoPay(ctx, pgclient.AutoPayRequest{BillID: "b1", BillingKey: "bk", Amount: 100}); pgclient.KindOf(err) != pgclient.KindUnknown {
		t.Fatalf("internal error after execution: %v", err)
	}
	if sim.Charged("b1") != 1 {
		t.Fatal("the operation behind an internal error was not executed")
	}

	// The answer is held until the caller gives up.
	sim.FailNext(pgsim.OpKakaoBill, pgsim.FaultTimeoutAfterExecute, 1)
	tctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	begin := time.Now()
	_, err = c.SendKakaoBill(tctx, pgclient.KakaoBillRequest{BillID: "b2", Phone: phone, Amount: 100})
	if pgclient.KindOf(err) != pgclient.KindUnknown || time.Since(begin) > 5*time.Second {
		t.Fatalf("timeout after execution: %v after %s", err, time.Since(begin))
	}
	if sim.Charged("b2") != 1 {
		t.Fatal("the held operation was not executed")
	}

	// Refused requests keep their kinds and codes.
	_, err = c.AutoPay(ctx, pgclient.AutoPayRequest{BillID: "b3", BillingKey: "limit_card", Amount: 100})
	if !errors.As(err, &e) || e.Kind != pgclient.KindDeclined || e.Code != "limit_exceeded" {
		t.Fatalf("decline: %#v", err)
	}
	if got := sim.Calls(pgsim.OpAutoPay); got != 3 {
		t.Fatalf("auto-pay calls = %d, want 3", got)
	}

	// Random faults too.
	flaky := newSim(t, pgsim.Config{ErrorRate: 1}).Client()
	if _, err := flaky.LookupPayment(ctx, "b1"); pgclient.KindOf(err) != pgclient.KindTransient {
		t.Fatalf("error rate 1: %v", err)
	}
}

// Latency comes before execution, and a caller that gives up during it
// leaves nothing executed; a caller that gave up before calling is not
// counted as a call.
func TestInProcessClientLatencyRespectsTheCaller(t *testing.T) {
	sim := newSim(t, pgsim.Config{Latency: 300 * time.Millisecond})
	c := sim.Client()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	begin := time.Now()
	_, err := c.AutoPay(ctx, pgclient.AutoPayRequest{BillID: "b1", BillingKey: "bk", Amount: 100})
	if pgclient.KindOf(err) != pgclient.KindUnknown || !strings.Contains(err.Error(), "deadline") || time.Since(begin) > 250*time.Millisecond {
		t.Fatalf("err = %v after %s", err, time.Since(begin))
	}
	time.Sleep(time.Until(begin.Add(450 * time.Millisecond)))
	if len(sim.Ledger()) != 0 || sim.Calls(pgsim.OpAutoPay) != 1 {
		t.Fatalf("ledger %+v, calls %d", sim.Ledger(), sim.Calls(pgsim.OpAutoPay))
	}
	begin = time.Now()
	if _, err := c.LookupPayment(context.Background(), "nope"); pgclient.KindOf(err) != pgclient.KindNotFound {
		t.Fatal(err)
	}
	if d := time.Since(begin); d < 300*time.Millisecond {
		t.Fatalf("answered in %s, under the latency", d)
	}
	if _, err := c.LookupPayment(ctx, "nope"); pgclient.KindOf(err) != pgclient.KindUnknown {
		t.Fatalf("with a context already done: %v", err)
	}
	if sim.Calls(pgsim.OpLookup) != 1 {
		t.Fatalf("lookup calls = %d, want 1", sim.Calls(pgsim.OpLookup))
	}
}

// countCalls is an observer that counts the calls it hears and checks each
// one ends exactly once.
type countCalls struct {
	mu           sync.Mutex
	started, end int
}

func (c *countCalls) Call(ctx context.Context, _ string) (context.Context, func(error)) {
	c.mu.Lock()
	c.started++
	c.mu.Unlock()
	return ctx, func(error) { c.mu.Lock(); c.end++; c.mu.Unlock() }
}

// payflow puts pgclient.Observed and pgclient.Sanitized around every
// client it runs with, so the wrappers must be invisible to the suite as
// well: same answers, same refusals, same capabilities.
func TestObservedClientSuite(t *testing.T) {
	sim := newSim(t, pgsim.Config{SettleDelay: -1})
	o := &countCalls{}
	h := harness(sim, pgclient.Observed(pgclient.Sanitized(sim.Client()), o))
	pgclienttest.Run(t, h)
	if o.started == 0 || o.started != o.end {
		t.Fatalf("observer heard %d calls start and %d end", o.started, o.end)
	}
}
