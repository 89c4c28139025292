package payssam_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/payflow/payflow/pgclient"
	"github.com/payflow/payflow/pgclient/payssam"
)

// goldenBill is the payflow bill id of the fixtures; its PaySSam id is
// 067J5QZV5US2R0CY4DV9.
const goldenBill = "019de0ee-6400-7123-8123-456789abcdef"

func fixture(t *testing.T, name string) []byte {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := json.Compact(&out, raw); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return out.Bytes()
}

// fakePaySSam answers each path with the fixture set for it and keeps the
// requests it got.
type fakePaySSam struct {
	t       *testing.T
	mu      sync.Mutex
	answers map[string]string // path → fixture
	got     []struct {
		path, ctype string
		body        []byte
	}
}

func (f *fakePaySSam) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.got = append(f.got, struct {
		path, ctype string
		body        []byte
	}{r.Method + " " + r.URL.Path, r.Header.Get("Content-Type"), body})
	name, ok := f.answers[r.URL.Path]
	if !ok {
		f.t.Errorf("unexpected request %s", r.URL.Path)
		w.WriteHeader(500)
		return
	}
	_, _ = w.Write(fixture(f.t, name))
}

func (f *fakePaySSam) answer(m map[string]string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.answers, f.got = m, nil
}

// sent checks the requests since the last answer() against fixtures,
// byte for byte (the fixtures compacted).
func (f *fakePaySSam) sent(want ...string) {
	f.t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.got) != len(want) {
		f.t.Fatalf("%d requests, want %d: %+v", len(f.got), len(want), f.got)
	}
	for i, w := range want {
		g := f.got[i]
		if g.ctype != "application/json; charset=utf-8" || g.path[:5] != "POST " {
			f.t.Fatalf("request %d: %s with %q", i, g.path, g.ctype)
		}
		if exp := fixture(f.t, w); !bytes.Equal(g.body, exp) {
			f.t.Fatalf("request %d to %s differs from %s:\n got  %s\n want %s", i, g.path, w, g.body, exp)
		}
	}
}

// The adapter's requests are the golden ones, and it reads the documented
// answers.
func TestGoldenRequestsAndAnswers(t *testing.T) {
	fake := &fakePaySSam{t: t}
	srv := httptest.NewServer(fake)
	defer srv.Close()
	c := newClient(t, srv.URL+"/partner", func(c *payssam.Config) {
		c.Now = func() time.Time { return time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC) }
	})
	pid := payssam.BillID(goldenBill)
	if pid != "067J5QZV5US2R0CY4DV9" {
		t.Fatalf("BillID = %s", pid)
	}
	read := "/partner" + payssam.PathRead

	fake.answer(map[string]string{"/partner" + payssam.PathBill: "bill_response.json"})
	acc, err := c.SendKakaoBill(bg, pgclient.KakaoBillRequest{BillID: goldenBill, MerchantID: "m1", Phone: "+82 10-1234-5678", Name: "Kim", Amount: 10000, OrderName: "order"})
	// expireDt is the 8th (KST): the link is payable until that day ends.
	until := time.Date(2026, 5, 9, 0, 0, 0, 0, time.FixedZone("KST", 9*60*60))
	if err != nil || acc.BillID != goldenBill || acc.PGTxID != pid || acc.URL != "https://payssam.kr/s/AbCd1234" || !acc.URLExpiresAt.Equal(until) {
		t.Fatalf("accepted = %+v %v", acc, err)
	}
	fake.sent("bill_request.json")

	fake.answer(map[string]string{read: "read_response_unpaid.json"})
	u, err := c.BillURL(bg, goldenBill)
	// expireDt 2026-05-08 (KST): payable until that day ends.
	if err != nil || u.URL != acc.URL || !u.ExpiresAt.Equal(time.Date(2026, 5, 8, 15, 0, 0, 0, time.UTC)) {
		t.Fatalf("bill url = %+v %v", u, err)
	}
	fake.sent("read_request.json")

	fake.answer(map[string]string{read: "read_response_paid.json"})
	p, err := c.LookupPayment(bg, goldenBill)
	if err != nil || p != (pgclient.Payment{BillID: goldenBill, Method: "kakao_bill", Status: pgclient.StatusPaid, Amount: 10000, PGTxID: pid}) {
		t.Fatalf("lookup of F = %+v %v", p, err)
	}
	fake.sent("read_request.json")

	fake.answer(map[string]string{read: "read_response_paid.json", "/partner" + payssam.PathCancel: "cancel_response.json"})
	r, err := c.Refund(bg, pgclient.RefundRequest{BillID: goldenBill, RefundID: "rf-1", Amount: 10000, Reason: "customer request, by phone"})
	if err != nil || r != (pgclient.Refunded{RefundID: "rf-1", Amount: 10000, RefundedTotal: 10000, PGTxID: pid}) {
		t.Fatalf("refund = %+v %v", r, err)
	}
	fake.sent("read_request.json", "cancel_request.json")

	fake.answer(map[string]string{read: "read_response_cancelled.json"})
	p, err = c.LookupPayment(bg, goldenBill)
	if err != nil || p.Status != pgclient.StatusPaid || p.Refunded != 10000 || p.Amount != 10000 {
		t.Fatalf("lookup of C = %+v %v", p, err)
	}
	// The refund again: answered from the cancelled bill, nothing sent.
	r2, err := c.Refund(bg, pgclient.RefundRequest{BillID: goldenBill, RefundID: "rf-1", Amount: 10000})
	if err != nil || r2 != r {
		t.Fatalf("refund again = %+v %v", r2, err)
	}
	fake.sent("read_request.json", "read_request.json")

	fake.answer(map[string]string{read: "read_response_unpaid.json", "/partner" + payssam.PathDestroy: "destroy_response.json"})
	if err := c.DestroyBill(bg, goldenBill); err != nil {
		t.Fatal(err)
	}
	fake.sent("read_request.json", "destroy_request.json")

	fake.answer(map[string]string{read: "read_response_destroyed.json"})
	if p, err := c.LookupPayment(bg, goldenBill); err != nil || p.Status != pgclient.StatusCancelled || p.Amount != 10000 {
		t.Fatalf("lookup of D = %+v %v", p, err)
	}
	if err := c.DestroyBill(bg, goldenBill); err != nil {
		t.Fatalf("destroying a D bill again: %v", err)
	}
	fake.sent("read_request.json", "read_request.json")

	fake.answer(map[string]string{"/partner" + payssam.PathRP: "rp_response.json"})
	acc, err = c.AutoPay(bg, pgclient.AutoPayRequest{BillID: goldenBill, MerchantID: "m1", BillingKey: "rp_method_1", Amount: 10000, OrderName: "order"})
	if err != nil || acc != (pgclient.Accepted{BillID: goldenBill, PGTxID: pid}) {
		t.Fatalf("auto-pay = %+v %v", acc, err)
	}
	fake.sent("rp_request.json")

	fake.answer(map[string]string{read: "error_not_found.json"})
	if _, err := c.LookupPayment(bg, goldenBill); pgclient.KindOf(err) != pgclient.KindNotFound {
		t.Fatalf("BILL_003: %v", err)
	}
	fake.answer(map[string]string{read: "error_hash.json"})
	_, err = c.LookupPayment(bg, goldenBill)
	if e := asError(t, err); e.Kind != pgclient.KindInvalid || e.Code != payssam.CodeHashMismatch || e.Message != "해싱값을 확인하시기 바랍니다." {
		t.Fatalf("VALIDATION_002: %#v", e)
	}
}
