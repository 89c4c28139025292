package pgsim_test

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/payflow/payflow/pgclient"
	"github.com/payflow/payflow/pgclient/pgclienttest"
	"github.com/payflow/payflow/pgclient/pgsim"
	"github.com/payflow/payflow/stdwebhook"
)

func start(t *testing.T, cfg pgsim.Config) (*pgsim.Sim, *pgclient.HTTPClient, string) {
	t.Helper()
	sim, err := pgsim.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(sim.Handler())
	t.Cleanup(func() { srv.Close(); sim.Close() })
	return sim, pgclient.NewHTTPClient(srv.URL, pgclient.WithTimeout(2*time.Second)), srv.URL
}

// The HTTP adapter against the simulator passes the suite every adapter
// must pass.
func TestHTTPAdapterSuite(t *testing.T) {
	var sims sync.Map
	pgclienttest.Run(t, pgclienttest.Harness{
		New: func(t *testing.T) pgclient.Client {
			sim, c, _ := start(t, pgsim.Config{})
			sims.Store(c, sim)
			t.Cleanup(func() { sims.Delete(c) })
			return c
		},
		Pay: func(t *testing.T, billID string) {
			paid := false
			sims.Range(func(_, v any) bool {
				if v.(*pgsim.Sim).Settle(billID, pgclient.StatusPaid) == nil {
					paid = true
				}
				return true
			})
			if !paid {
				t.Fatalf("no simulator holds bill %s", billID)
			}
		},
		GoodKey: "bk_good", DeclineKey: "decline_card", ExpiredKey: "expired_card",
	})
}

func TestErrorClassification(t *testing.T) {
	sim, c, _ := start(t, pgsim.Config{TimeoutHold: 5 * time.Second})
	ctx := context.Background()
	req := func(id string) pgclient.KakaoBillRequest {
		return pgclient.KakaoBillRequest{BillID: id, Phone: "+821012345678", Amount: 100, OrderName: "o"}
	}

	sim.FailNext(pgsim.OpKakaoBill, pgsim.FaultUnavailable, 1)
	_, err := c.SendKakaoBill(ctx, req("b1"))
	if pgclient.KindOf(err) != pgclient.KindTransient {
		t.Fatalf("503: %v", err)
	}
	if _, err := c.LookupPayment(ctx, "b1"); pgclient.KindOf(err) != pgclient.KindNotFound {
		t.Fatalf("a 503 must not have executed: %v", err)
	}

	sim.FailNext(pgsim.OpKakaoBill, pgsim.FaultInternalAfterExecute, 1)
	if _, err := c.SendKakaoBill(ctx, req("b2")); pgclient.KindOf(err) != pgclient.KindUnknown {
		t.Fatalf("500: %v", err)
	}
	if sim.Charged("b2") != 1 {
		t.Fatal("the 500 fault did not execute first")
	}

	sim.FailNext(pgsim.OpKakaoBill, pgsim.FaultTimeoutAfterExecute, 1)
	tctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	_, err = c.SendKakaoBill(tctx, req("b3"))
	cancel()
	if pgclient.KindOf(err) != pgclient.KindUnknown {
		t.Fatalf("timeout: %v", err)
	}

	// Nothing listens here: refused before anything was sent.
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	dead := pgclient.NewHTTPClient("http://" + addr)
	if _, err := dead.SendKakaoBill(ctx, req("b4")); pgclient.KindOf(err) != pgclient.KindTransient {
		t.Fatalf("connection refused: %v", err)
	}
}

func TestWebhooksAreSignedAndRetried(t *testing.T) {
	secret := stdwebhook.NewSecret()
	secrets, _ := stdwebhook.ParseSecrets(secret)
	v := &stdwebhook.Verifier{Secrets: secrets}
	var mu sync.Mutex
	var ids []string
	var bodies []pgsim.Notification
	attempts := 0
	cb := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body [4096]byte
		n, _ := r.Body.Read(body[:])
		id, err := v.Verify(r.Header, body[:n])
		if err != nil {
			t.Errorf("webhook not verifiable: %v", err)
		}
		mu.Lock()
		defer mu.Unlock()
		attempts++
		if attempts == 1 {
			w.WriteHeader(http.StatusInternalServerError) // a PG must send again
			return
		}
		var nb pgsim.Notification
		_ = json.Unmarshal(body[:n], &nb)
		ids, bodies = append(ids, id), append(bodies, nb)
	}))
	defer cb.Close()
	_, c, _ := start(t, pgsim.Config{CallbackURL: cb.URL, WebhookSecret: secret, SettleDelay: 10 * time.Millisecond})
	if _, err := c.AutoPay(context.Background(), pgclient.AutoPayRequest{BillID: "b1", BillingKey: "bk", Amount: 700, OrderName: "o"}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		mu.Lock()
		done := len(bodies) == 1
		mu.Unlock()
		if done {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(bodies) != 1 || bodies[0].BillID != "b1" || bodies[0].Status != "paid" || bodies[0].Amount != 700 || attempts != 2 {
		t.Fatalf("bodies %+v after %d attempts", bodies, attempts)
	}
}

func TestLedgerEndpoint(t *testing.T) {
	_, c, url := start(t, pgsim.Config{})
	if _, err := c.SendKakaoBill(context.Background(), pgclient.KakaoBillRequest{BillID: "b1", Phone: "+821012345678", Amount: 100, OrderName: "o"}); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get(url + "/sim/ledger")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var entries []pgsim.Entry
	if err := json.NewDecoder(resp.Body).Decode(&entries); err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Op != "kakao_bill" || entries[0].BillID != "b1" || entries[0].Outcome != "accepted" {
		t.Fatalf("ledger = %+v", entries)
	}
}
