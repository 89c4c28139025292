package worker_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/payflow/payflow/internal/testdb"
	"github.com/payflow/payflow/payflow"
	"github.com/payflow/payflow/pgclient"
	"github.com/payflow/payflow/worker"
)

// deletable is a method book whose one card is deleted while its first
// auto-pay attempt is in flight (the API's DELETE answered 204).
type deletable struct {
	mu      sync.Mutex
	deleted bool
}

func (d *deletable) Default(_ context.Context, member string) (*payflow.StoredMethod, string, error) {
	return &payflow.StoredMethod{ID: methodID(member), Status: payflow.MethodActive}, "bk_deleted_card_4242", nil
}

func (d *deletable) BillingKey(_ context.Context, id string) (string, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.deleted {
		return "", fmt.Errorf("%w: method deleted", payflow.ErrMethodUnusable)
	}
	return "bk_deleted_card_4242", nil
}

// deletingPG answers the first auto-pay with an error of kind first (it
// did not execute it) while the member deletes the card, and records the
// key of every auto-pay after it.
type deletingPG struct {
	*fakePG
	book  *deletable
	first pgclient.Kind
	once  sync.Once
	keyed []string
}

func (p *deletingPG) AutoPay(ctx context.Context, r pgclient.AutoPayRequest) (pgclient.Accepted, error) {
	first := false
	p.once.Do(func() { first = true })
	if first {
		p.book.mu.Lock()
		p.book.deleted = true // DELETE /v1/members/mem1/payment-methods/{id} → 204
		p.book.mu.Unlock()
		return pgclient.Accepted{}, &pgclient.Error{Op: "auto_pay", Kind: p.first, Message: "the first attempt"}
	}
	p.keyed = append(p.keyed, r.BillingKey)
	return p.fakePG.AutoPay(ctx, r)
}

// A card deleted while a charge's auto-pay is being retried is not
// charged by the retry (found by review: the key read when the charge was
// decided was kept for every attempt). The attempt that met a 503 moved no
// money, so the bill is given up as declined and the customer billed by
// KakaoTalk instead.
func TestADeletedCardIsNotChargedOnRetry(t *testing.T) {
	st := testdb.New(t)
	book := &deletable{}
	pg := &deletingPG{fakePG: newFakePG(), book: book, first: pgclient.KindTransient}
	w := worker.New(worker.Config{Store: st, PG: pg, Methods: book, Lease: time.Minute,
		RetryBudget: 2 * time.Second, RetryInitial: time.Millisecond})
	if err := w.Handle(context.Background(), chargeEvent("c1", "mem1", 5000)); err != nil {
		t.Fatal(err)
	}
	if len(pg.keyed) > 0 {
		t.Fatalf("the card was deleted (204) before this attempt, yet auto-pay charged it %d time(s) with %v", len(pg.keyed), pg.keyed)
	}
	var declined, kakao int
	if err := st.Pool.QueryRow(context.Background(), `SELECT count(*) FILTER (WHERE status = 'declined'), count(*) FILTER (WHERE method = 'kakao_bill')
		FROM bills`).Scan(&declined, &kakao); err != nil || declined != 1 || kakao != 1 {
		t.Fatalf("%d auto-pay bills declined, %d KakaoTalk bills (%v); want one each", declined, kakao, err)
	}
}

// A card deleted after an attempt whose outcome is unknown is not sent
// again, and the bill is not given up while that attempt may still land:
// the charge stays placing. Once its lease has expired the sweeper finds
// the bill unknown to the PG, gives it up as declined and bills by
// KakaoTalk.
func TestACardDeletedAfterAnUnknownAttemptIsNeitherSentNorGivenUp(t *testing.T) {
	st := testdb.New(t)
	ctx := context.Background()
	book := &deletable{}
	pg := &deletingPG{fakePG: newFakePG(), book: book, first: pgclient.KindUnknown}
	w := worker.New(worker.Config{Store: st, PG: pg, Methods: book, Lease: time.Minute,
		RetryBudget: 200 * time.Millisecond, RetryInitial: time.Millisecond})
	_ = w.Handle(ctx, chargeEvent("c1", "mem1", 5000))
	bills := func() (declined, kakao int) {
		t.Helper()
		if err := st.Pool.QueryRow(ctx, `SELECT count(*) FILTER (WHERE status = 'declined'), count(*) FILTER (WHERE method = 'kakao_bill')
			FROM bills`).Scan(&declined, &kakao); err != nil {
			t.Fatal(err)
		}
		return declined, kakao
	}
	var state string
	if err := st.Pool.QueryRow(ctx, `SELECT state FROM charges`).Scan(&state); err != nil {
		t.Fatal(err)
	}
	if d, k := bills(); state != "placing" || d != 0 || k != 0 || len(pg.keyed) != 0 {
		t.Fatalf("charge %s, %d declined, %d KakaoTalk bills, auto-pay sent again %d times; want it placing, nothing else", state, d, k, len(pg.keyed))
	}
	if _, err := st.Pool.Exec(ctx, `UPDATE charges SET lease_until = now() - interval '1 second'`); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Sweep(ctx, 10); err != nil {
		t.Fatal(err)
	}
	if d, k := bills(); d != 1 || k != 1 || len(pg.keyed) != 0 {
		t.Fatalf("after the sweep: %d declined, %d KakaoTalk bills, auto-pay sent again %d times", d, k, len(pg.keyed))
	}
}
