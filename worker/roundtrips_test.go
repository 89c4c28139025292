package worker_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/payflow/payflow/internal/testdb"
	"github.com/payflow/payflow/payflow"
	"github.com/payflow/payflow/store"
	"github.com/payflow/payflow/worker"
)

// roundTrips counts what a store sends Postgres: each statement sent alone
// and each batch is one round trip (and, outside a transaction, one commit).
type roundTrips struct {
	mu  sync.Mutex
	sql []string
}

func (r *roundTrips) add(sql string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sql = append(r.sql, strings.Join(strings.Fields(sql), " "))
}

func (r *roundTrips) TraceQueryStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	r.add(d.SQL)
	return ctx
}

func (r *roundTrips) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

func (r *roundTrips) TraceBatchStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceBatchStartData) context.Context {
	r.add("batch")
	return ctx
}

func (r *roundTrips) TraceBatchQuery(context.Context, *pgx.Conn, pgx.TraceBatchQueryData) {}
func (r *roundTrips) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData)     {}

// take returns what was sent since the last take.
func (r *roundTrips) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.sql
	r.sql = nil
	return out
}

// storeMethods reads members' default methods from the store, as payflow's
// own method source does (there the billing key is also opened).
type storeMethods struct{ st *store.Store }

func (m storeMethods) Default(ctx context.Context, member string) (*payflow.StoredMethod, string, error) {
	sm, err := m.st.DefaultMethod(ctx, member)
	if err != nil || sm == nil {
		return nil, "", err
	}
	return &payflow.StoredMethod{ID: sm.ID, Status: sm.Status}, string(sm.BillingKeyEnc), nil
}

func (m storeMethods) BillingKey(ctx context.Context, id string) (string, error) {
	sm, err := m.st.MethodByID(ctx, id)
	return string(sm.BillingKeyEnc), err
}

// TestOneChargeCostsItsRoundTrips pins the hot path's statements: a new
// auto-pay charge reads the member's default method, stores its claim and
// stores its result (3); a KakaoTalk charge of a non-member stores its claim
// and its result (2); a declined auto-pay adds one statement, the decline
// with the switch to a KakaoTalk bill. Nothing is read back that the worker
// already holds.
// A statement added to this path shows up here first.
func TestOneChargeCostsItsRoundTrips(t *testing.T) {
	ctx := context.Background()
	dsn := testdb.NewDSN(t)
	if err := store.Migrate(ctx, dsn); err != nil {
		t.Fatal(err)
	}
	sent := &roundTrips{}
	st, err := store.OpenWith(ctx, dsn, store.Options{Tracer: sent})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for member, key := range map[string]string{"mem1": "bk_good", "mem2": "decline_card"} {
		if _, err := st.AddMethod(ctx, payflow.PaymentMethod{ID: uuid.NewString(), MemberID: member, Label: "card", BillingKeyEnc: []byte(key)}); err != nil {
			t.Fatal(err)
		}
	}
	pg := newFakePG()
	w := worker.New(worker.Config{Store: st, PG: pg, Methods: storeMethods{st}, Lease: time.Minute,
		RetryBudget: 2 * time.Second, RetryInitial: time.Millisecond})
	for _, c := range []struct {
		name   string
		member string
		want   int
	}{
		{"auto-pay", "mem1", 3},
		{"kakao", "", 2},
		{"declined", "mem2", 4}, // and the decline with the switch to a KakaoTalk bill
	} {
		sent.take()
		if err := w.Handle(ctx, chargeEvent("c-"+c.name, c.member, 1000)); err != nil {
			t.Fatal(err)
		}
		got := sent.take()
		for _, s := range got {
			t.Logf("%s: %.100s", c.name, s)
		}
		if len(got) != c.want {
			t.Errorf("a new %s charge took %d round trips to Postgres, want %d", c.name, len(got), c.want)
		}
	}
	if pg.count("auto_pay") != 2 || pg.count("kakao_bill") != 2 {
		t.Fatalf("PG calls: auto_pay %d, kakao_bill %d", pg.count("auto_pay"), pg.count("kakao_bill"))
	}
}
