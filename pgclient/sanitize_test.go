package pgclient_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/payflow/payflow/pgclient"
)

// dirty is what a PG, or whatever stands in front of it, might send back:
// a NUL, bytes that are not UTF-8, and more than anyone should store.
var dirty = []string{"tx\x00", "tx\xff\xfe", strings.Repeat("é", pgclient.MaxText)}

// dirtyPG answers every call with s in every string of its answer, and
// with an error whose code and message are s.
type dirtyPG struct {
	s   string
	err bool
}

func (p dirtyPG) fail() error {
	if !p.err {
		return nil
	}
	return &pgclient.Error{Op: "x", Kind: pgclient.KindDeclined, Code: p.s, Message: p.s}
}

func (p dirtyPG) AutoPay(context.Context, pgclient.AutoPayRequest) (pgclient.Accepted, error) {
	return pgclient.Accepted{BillID: p.s, PGTxID: p.s, URL: p.s}, p.fail()
}
func (p dirtyPG) SendKakaoBill(context.Context, pgclient.KakaoBillRequest) (pgclient.Accepted, error) {
	return pgclient.Accepted{BillID: p.s, PGTxID: p.s, URL: p.s}, p.fail()
}
func (p dirtyPG) BillURL(context.Context, string) (pgclient.BillURL, error) {
	return pgclient.BillURL{URL: p.s}, p.fail()
}
func (p dirtyPG) LookupPayment(context.Context, string) (pgclient.Payment, error) {
	return pgclient.Payment{BillID: p.s, Method: p.s, Status: pgclient.PaymentStatus(p.s), PGTxID: p.s, Decline: p.s}, p.fail()
}
func (p dirtyPG) Refund(context.Context, pgclient.RefundRequest) (pgclient.Refunded, error) {
	return pgclient.Refunded{RefundID: p.s, PGTxID: p.s}, p.fail()
}
func (p dirtyPG) DestroyBill(context.Context, string) error { return p.fail() }

// storable is what Postgres can hold as text and the events carry as is.
func storable(s string) bool {
	return utf8.ValidString(s) && !strings.ContainsRune(s, 0) && len(s) <= pgclient.MaxText
}

// Every string a sanitized PG hands back can be stored: found by review, a
// transaction id with a NUL in an accepted bill's answer left its charge
// placing for ever (Postgres refused every attempt to record it).
func TestSanitizedAnswersCanBeStored(t *testing.T) {
	ctx := context.Background()
	for _, s := range dirty {
		for _, fail := range []bool{false, true} {
			pg := pgclient.Sanitized(dirtyPG{s: s, err: fail})
			var got []string
			a, err1 := pg.AutoPay(ctx, pgclient.AutoPayRequest{})
			k, err2 := pg.SendKakaoBill(ctx, pgclient.KakaoBillRequest{})
			u, err3 := pg.BillURL(ctx, "b")
			p, err4 := pg.LookupPayment(ctx, "b")
			r, err5 := pg.Refund(ctx, pgclient.RefundRequest{})
			err6 := pg.DestroyBill(ctx, "b")
			got = append(got, a.BillID, a.PGTxID, a.URL, k.BillID, k.PGTxID, k.URL, u.URL,
				p.BillID, p.Method, string(p.Status), p.PGTxID, p.Decline, r.RefundID, r.PGTxID)
			for _, err := range []error{err1, err2, err3, err4, err5, err6} {
				var e *pgclient.Error
				if fail != errors.As(err, &e) {
					t.Fatalf("error %v, want one: %t", err, fail)
				}
				if fail {
					got = append(got, e.Code, e.Message)
					if m := err.Error(); !utf8.ValidString(m) || strings.ContainsRune(m, 0) {
						t.Fatalf("%.40q: error %.80q cannot be logged as is", s, m)
					}
				}
			}
			for i, g := range got {
				if !storable(g) {
					t.Fatalf("%.40q, field %d: %.80q cannot be stored", s, i, g)
				}
				if g == "" {
					t.Fatalf("%.40q, field %d: emptied", s, i)
				}
			}
		}
	}
}

// A clean answer passes unchanged, and what is cut or replaced still says
// what it was.
func TestSanitizedKeepsWhatIsClean(t *testing.T) {
	clean := "pgtx_01JD-한글"
	for in, want := range map[string]string{
		clean:                                   clean,
		"tx\x00":                                "tx\uFFFD",
		"tx\xff":                                "tx\uFFFD",
		strings.Repeat("a", pgclient.MaxText+1): strings.Repeat("a", pgclient.MaxText-len("…")) + "…",
	} {
		if got := pgclient.Text(in); got != want {
			t.Errorf("Text(%.20q…) = %.20q…, want %.20q…", in, got, want)
		}
	}
	a, err := pgclient.Sanitized(dirtyPG{s: clean}).AutoPay(context.Background(), pgclient.AutoPayRequest{})
	if err != nil || a.PGTxID != clean || a.BillID != clean {
		t.Fatalf("%+v, %v", a, err)
	}
}
