package store_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/payflow/payflow/internal/testdb"
	"github.com/payflow/payflow/outbox"
	"github.com/payflow/payflow/payflow"
	"github.com/payflow/payflow/store"
)

func cvNoEvents(payflow.SettledBill) ([]outbox.Message, error) { return nil, nil }
func cvNoRefundEvents(int64) ([]outbox.Message, error)         { return nil, nil }

// cvCreate stores a charge with its first bill and returns its pk.
func cvCreate(t *testing.T, st *store.Store, merchant, charge string, amount int64, bill payflow.Bill) int64 {
	t.Helper()
	req := payflow.ChargeRequest{MerchantID: merchant, ChargeID: charge, Amount: amount, Currency: "KRW", OrderName: "order",
		Customer: payflow.Customer{MemberID: "mem", Phone: "+821012345678", Name: "Kim"}}
	bill.Amount = amount
	pk, created, err := st.CreateCharge(context.Background(), payflow.NewCharge{Request: req, RequestHash: req.Fingerprint(),
		RequestEventID: "evt-" + charge, Bill: bill, LeaseOwner: "test", Lease: time.Minute})
	if err != nil || !created {
		t.Fatalf("create charge: %v (created %v)", err, created)
	}
	return pk
}

func cvPlaced(t *testing.T, st *store.Store, pk int64, billID string, repayPK int64) {
	t.Helper()
	if err := st.FinishPlacing(context.Background(), payflow.PlaceResult{ChargePK: pk, BillID: billID, ChargeState: payflow.StateRequested,
		BillStatus: payflow.BillRequested, PGTxID: "tx-" + billID, Attempts: 1, RepayPK: repayPK, Owner: "test"}, nil); err != nil {
		t.Fatal(err)
	}
}

func cvPaid(t *testing.T, st *store.Store, billID string, amount int64) {
	t.Helper()
	if _, _, err := st.Settle(context.Background(), payflow.Settlement{BillID: billID, Status: payflow.SettlePaid, Amount: amount,
		PGTxID: "tx-" + billID}, cvNoEvents); err != nil {
		t.Fatal(err)
	}
}

// TestChargeViewHistory drives one charge through a declined auto-pay, the
// KakaoTalk bill that replaced it, a partial refund and a re-payment for a
// smaller amount, and checks the view tells that story with amounts that
// add up.
func TestChargeViewHistory(t *testing.T) {
	st := testdb.New(t)
	ctx := context.Background()
	pk := cvCreate(t, st, "m1", "c1", 5000, payflow.Bill{BillID: "b-auto", Method: payflow.MethodAutoPay})
	if err := st.Decline(ctx, pk, payflow.Bill{BillID: "b-auto"}, payflow.DeclineLimit, payflow.MethodActive,
		payflow.Bill{BillID: "b-kakao", Method: payflow.MethodKakaoBill, FallbackReason: payflow.FallbackMethodLimit, Amount: 5000}, "test", time.Minute); err != nil {
		t.Fatal(err)
	}
	cvPlaced(t, st, pk, "b-kakao", 0)

	v, err := st.ChargeView(ctx, "m1", "c1")
	if err != nil {
		t.Fatal(err)
	}
	if v.State != payflow.StateRequested || v.BillID != "b-kakao" || v.Method != payflow.MethodKakaoBill ||
		v.FallbackReason != payflow.FallbackMethodLimit || v.BillStatus != payflow.BillRequested || v.Amount != 5000 ||
		v.PaidAmount != 0 || v.RefundedAmount != 0 {
		t.Fatalf("requested view: %+v", v)
	}

	cvPaid(t, st, "b-kakao", 5000)
	// A refund, then a re-payment (what is left of the paid bill refunded,
	// then a new bill), judged under the charge's lease.
	h, err := st.AcquireCharge(ctx, pk, "test", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	rpk, _, err := st.CreateRefund(ctx, payflow.NewRefund{MerchantID: "m1", RefundID: "r1", Kind: "refund", ChargePK: pk, BillID: "b-kakao",
		Amount: 2000, Reason: "damaged", RequestHash: []byte("h"), Holder: h})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.FinishRefund(ctx, rpk, payflow.RefundResult{Succeeded: true, PGTxID: "rtx"}, cvNoRefundEvents, nil); err != nil {
		t.Fatal(err)
	}
	rp, _, err := st.CreateRepay(ctx, payflow.NewRepay{MerchantID: "m1", RepayID: "rp1", ChargePK: pk, OldBillID: "b-kakao",
		Amount: 4000, RequestHash: []byte("h2"), Holder: h, Lease: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	newBill := payflow.Bill{BillID: "b-repay", Method: payflow.MethodKakaoBill, Amount: 4000}
	if _, err := st.FinishRefund(ctx, rp.RefundPK, payflow.RefundResult{Succeeded: true, PGTxID: "rtx2"}, cvNoRefundEvents,
		&payflow.RepayNext{RepayPK: rp.PK, Bill: newBill, Owner: "test", Lease: time.Minute}); err != nil {
		t.Fatal(err)
	}
	cvPlaced(t, st, pk, "b-repay", rp.PK)
	cvPaid(t, st, "b-repay", 4000)

	v, err = st.ChargeView(ctx, "m1", "c1")
	if err != nil {
		t.Fatal(err)
	}
	if v.MerchantID != "m1" || v.ChargeID != "c1" || v.State != payflow.StatePaid || v.BillID != "b-repay" ||
		v.BillStatus != payflow.BillPaid || v.Amount != 4000 || v.FallbackReason != "" {
		t.Fatalf("after the re-payment: %+v", v)
	}
	// 5000 paid, 2000 + 3000 refunded, 4000 paid again: out of pocket 4000.
	if v.PaidAmount != 9000 || v.RefundedAmount != 5000 {
		t.Fatalf("paid %d refunded %d, want 9000 and 5000", v.PaidAmount, v.RefundedAmount)
	}
	if v.CreatedAt.IsZero() || v.UpdatedAt.Before(v.CreatedAt) {
		t.Fatalf("times: %v %v", v.CreatedAt, v.UpdatedAt)
	}

	if len(v.Bills) != 3 {
		t.Fatalf("bills: %+v", v.Bills)
	}
	auto, kakao, repay := v.Bills[0], v.Bills[1], v.Bills[2]
	if auto.BillID != "b-auto" || auto.Method != payflow.MethodAutoPay || auto.Status != payflow.BillDeclined ||
		auto.DeclineCode != string(payflow.DeclineLimit) || auto.SettledAt != nil || auto.Amount != 5000 {
		t.Fatalf("declined auto-pay bill: %+v", auto)
	}
	if kakao.BillID != "b-kakao" || kakao.Status != payflow.BillPaid || kakao.PaidAmount != 5000 || kakao.RefundedAmount != 5000 ||
		kakao.FallbackReason != payflow.FallbackMethodLimit || kakao.SettledAt == nil || kakao.RepayID != "" {
		t.Fatalf("KakaoTalk bill: %+v", kakao)
	}
	if repay.BillID != "b-repay" || repay.RepayID != "rp1" || repay.Amount != 4000 || repay.PaidAmount != 4000 || repay.SettledAt == nil {
		t.Fatalf("re-payment bill: %+v", repay)
	}
	if !auto.CreatedAt.Before(kakao.CreatedAt) || !kakao.CreatedAt.Before(repay.CreatedAt) {
		t.Fatal("bills are not oldest first")
	}

	if len(v.Refunds) != 2 {
		t.Fatalf("refunds: %+v", v.Refunds)
	}
	r1, r2 := v.Refunds[0], v.Refunds[1]
	if r1.RefundID != "r1" || r1.Kind != "refund" || r1.Amount != 2000 || r1.Status != "succeeded" || r1.BillID != "b-kakao" {
		t.Fatalf("refund: %+v", r1)
	}
	if r2.RefundID != "repay:rp1" || r2.Kind != "repay" || r2.Amount != 3000 || r2.Status != "succeeded" {
		t.Fatalf("re-payment refund: %+v", r2)
	}
}

func TestChargeViewIsScopedToTheMerchant(t *testing.T) {
	st := testdb.New(t)
	ctx := context.Background()
	cvCreate(t, st, "m1", "c1", 5000, payflow.Bill{BillID: "b-m1", Method: payflow.MethodKakaoBill, FallbackReason: payflow.FallbackNotMember})
	// The same charge id at another merchant is another charge.
	cvCreate(t, st, "m2", "c1", 7000, payflow.Bill{BillID: "b-m2", Method: payflow.MethodKakaoBill, FallbackReason: payflow.FallbackNotMember})

	for merchant, want := range map[string]string{"m1": "b-m1", "m2": "b-m2"} {
		v, err := st.ChargeView(ctx, merchant, "c1")
		if err != nil || v.BillID != want || len(v.Bills) != 1 || v.Bills[0].BillID != want {
			t.Fatalf("%s: %+v %v", merchant, v, err)
		}
		if v.State != payflow.StatePlacing || v.BillStatus != payflow.BillPending {
			t.Fatalf("%s: a charge still being placed shows %s/%s", merchant, v.State, v.BillStatus)
		}
	}
	for _, key := range [][2]string{{"m3", "c1"}, {"m1", "c2"}, {"", "c1"}, {"m1", ""}} {
		if _, err := st.ChargeView(ctx, key[0], key[1]); !errors.Is(err, payflow.ErrNotFound) {
			t.Errorf("ChargeView%v: %v, want ErrNotFound", key, err)
		}
		if _, err := st.CurrentBill(ctx, key[0], key[1]); !errors.Is(err, payflow.ErrNotFound) {
			t.Errorf("CurrentBill%v: %v, want ErrNotFound", key, err)
		}
	}
}

func TestBillURLCache(t *testing.T) {
	st := testdb.New(t)
	ctx := context.Background()
	pk := cvCreate(t, st, "m1", "c1", 5000, payflow.Bill{BillID: "b1", Method: payflow.MethodKakaoBill, FallbackReason: payflow.FallbackNoMethod})
	cvPlaced(t, st, pk, "b1", 0)

	b, err := st.CurrentBill(ctx, "m1", "c1")
	if err != nil {
		t.Fatal(err)
	}
	if b.BillID != "b1" || b.ChargePK != pk || b.Method != payflow.MethodKakaoBill || b.Status != payflow.BillRequested ||
		b.Amount != 5000 || b.URL != "" || !b.URLExpiresAt.IsZero() {
		t.Fatalf("before caching: %+v", b)
	}
	expires := time.Now().Add(30 * time.Minute).UTC().Truncate(time.Microsecond)
	if err := st.CacheBillURL(ctx, "b1", "https://pay.example/b1", expires); err != nil {
		t.Fatal(err)
	}
	b, err = st.CurrentBill(ctx, "m1", "c1")
	if err != nil || b.URL != "https://pay.example/b1" || !b.URLExpiresAt.Equal(expires) {
		t.Fatalf("after caching: %+v %v", b, err)
	}
	// Another merchant cannot reach the bill through the same charge id.
	if _, err := st.CurrentBill(ctx, "m2", "c1"); !errors.Is(err, payflow.ErrNotFound) {
		t.Fatalf("another merchant: %v", err)
	}
	if err := st.CacheBillURL(ctx, "no-such-bill", "https://x", expires); !errors.Is(err, payflow.ErrNotFound) {
		t.Fatalf("unknown bill: %v", err)
	}
}
