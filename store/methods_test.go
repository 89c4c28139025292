package store_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/google/uuid"

	"github.com/payflow/payflow/internal/testdb"
	"github.com/payflow/payflow/payflow"
	"github.com/payflow/payflow/store"
)

func pmAdd(t *testing.T, st *store.Store, member, label string, def bool) payflow.PaymentMethod {
	t.Helper()
	m, err := st.AddMethod(context.Background(), payflow.PaymentMethod{ID: uuid.NewString(), MemberID: member, Label: label,
		Default: def, BillingKeyEnc: []byte("sealed:" + label)})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// pmLabels lists a member's methods as label(default)/status, in list order.
func pmLabels(t *testing.T, st *store.Store, member string) string {
	t.Helper()
	ms, err := st.ListMethods(context.Background(), member)
	if err != nil {
		t.Fatal(err)
	}
	out := ""
	for _, m := range ms {
		out += m.Label
		if m.Default {
			out += "*"
		}
		if m.Status != payflow.MethodActive {
			out += "/" + string(m.Status)
		}
		out += " "
	}
	return out
}

func TestMethodsFirstBecomesDefault(t *testing.T) {
	st := testdb.New(t)
	a := pmAdd(t, st, "mem", "A", false)
	if !a.Default || a.Status != payflow.MethodActive || a.CreatedAt.IsZero() {
		t.Fatalf("first method: %+v, want the active default", a)
	}
	b := pmAdd(t, st, "mem", "B", false)
	if b.Default {
		t.Fatal("a second method not asked to be default became default")
	}
	if got := pmLabels(t, st, "mem"); got != "A* B " {
		t.Fatalf("list = %q", got)
	}
	// Another member's first method is that member's default: members do
	// not share defaults.
	if c := pmAdd(t, st, "other", "C", false); !c.Default {
		t.Fatal("another member's first method is not its default")
	}
}

func TestMethodsNewDefaultReplacesTheOld(t *testing.T) {
	st := testdb.New(t)
	ctx := context.Background()
	pmAdd(t, st, "mem", "A", true)
	pmAdd(t, st, "mem", "B", false)
	c := pmAdd(t, st, "mem", "C", true)
	if got := pmLabels(t, st, "mem"); got != "C* B A " {
		t.Fatalf("list = %q, want the default first, then the newest", got)
	}
	d, err := st.DefaultMethod(ctx, "mem")
	if err != nil || d == nil || d.ID != c.ID || string(d.BillingKeyEnc) != "sealed:C" {
		t.Fatalf("default = %+v, %v", d, err)
	}
}

func TestMethodsNoDefaultIsNil(t *testing.T) {
	st := testdb.New(t)
	if m, err := st.DefaultMethod(context.Background(), "nobody"); m != nil || err != nil {
		t.Fatalf("DefaultMethod of a member without methods = %+v, %v; want nil, nil", m, err)
	}
	m := pmAdd(t, st, "mem", "A", false)
	if err := st.DeleteMethod(context.Background(), "mem", m.ID); err != nil {
		t.Fatal(err)
	}
	if m, err := st.DefaultMethod(context.Background(), "mem"); m != nil || err != nil {
		t.Fatalf("DefaultMethod after the only method was deleted = %+v, %v", m, err)
	}
}

func TestMethodsDeletePromotesTheMostRecentActive(t *testing.T) {
	st := testdb.New(t)
	ctx := context.Background()
	a := pmAdd(t, st, "mem", "A", true)
	pmAdd(t, st, "mem", "B", false)
	c := pmAdd(t, st, "mem", "C", false)
	d := pmAdd(t, st, "mem", "D", false) // the newest, but expired below
	if err := st.SetMethodStatus(ctx, d.ID, payflow.MethodExpired); err != nil {
		t.Fatal(err)
	}
	if err := st.DeleteMethod(ctx, "mem", a.ID); err != nil {
		t.Fatal(err)
	}
	if def, _ := st.DefaultMethod(ctx, "mem"); def == nil || def.ID != c.ID {
		t.Fatalf("default after deleting it = %+v, want C (the newest active one)", def)
	}
	if got := pmLabels(t, st, "mem"); got != "C* D/expired B " {
		t.Fatalf("list = %q", got)
	}
	// Deleting a method that is not the default leaves the default alone.
	if err := st.DeleteMethod(ctx, "mem", d.ID); err != nil {
		t.Fatal(err)
	}
	if got := pmLabels(t, st, "mem"); got != "C* B " {
		t.Fatalf("list = %q", got)
	}
}

func TestMethodsDeleteErasesTheSealedKey(t *testing.T) {
	st := testdb.New(t)
	ctx := context.Background()
	m := pmAdd(t, st, "mem", "A", true)
	if err := st.DeleteMethod(ctx, "mem", m.ID); err != nil {
		t.Fatal(err)
	}
	var status string
	var sealed []byte
	if err := st.Pool.QueryRow(ctx, `SELECT status, billing_key_enc FROM payment_methods WHERE id = $1`, m.ID).Scan(&status, &sealed); err != nil {
		t.Fatal(err)
	}
	if status != "deleted" || len(sealed) != 0 {
		t.Fatalf("deleted row: status %s, %d bytes of sealed key left", status, len(sealed))
	}
	if _, err := st.MethodByID(ctx, m.ID); !errors.Is(err, payflow.ErrNotFound) {
		t.Fatalf("MethodByID of a deleted method: %v", err)
	}
}

func TestMethodsDeleteNotFound(t *testing.T) {
	st := testdb.New(t)
	ctx := context.Background()
	mine := pmAdd(t, st, "mem", "A", true)
	theirs := pmAdd(t, st, "other", "B", true)
	for name, id := range map[string]string{
		"unknown id":             uuid.NewString(),
		"not a uuid":             "not-a-uuid",
		"another member's":       theirs.ID,
		"empty":                  "",
		"sql in the id":          "'; DELETE FROM payment_methods; --",
		"uuid with extra spaces": " " + mine.ID + " ",
	} {
		if err := st.DeleteMethod(ctx, "mem", id); !errors.Is(err, payflow.ErrNotFound) {
			t.Errorf("%s: %v, want ErrNotFound", name, err)
		}
	}
	if got := pmLabels(t, st, "other"); got != "B* " {
		t.Fatalf("the other member's methods changed: %q", got)
	}
	if err := st.DeleteMethod(ctx, "mem", mine.ID); err != nil {
		t.Fatal(err)
	}
	if err := st.DeleteMethod(ctx, "mem", mine.ID); !errors.Is(err, payflow.ErrNotFound) {
		t.Fatalf("deleting twice: %v, want ErrNotFound", err)
	}
}

func TestMethodsSetStatus(t *testing.T) {
	st := testdb.New(t)
	ctx := context.Background()
	a := pmAdd(t, st, "mem", "A", true)
	if err := st.SetMethodStatus(ctx, a.ID, payflow.MethodExpired); err != nil {
		t.Fatal(err)
	}
	// The expired card stays the default, so the decision can say why it
	// does not auto-pay.
	d, err := st.DefaultMethod(ctx, "mem")
	if err != nil || d == nil || d.ID != a.ID || d.Status != payflow.MethodExpired {
		t.Fatalf("default after expiry = %+v, %v", d, err)
	}
	if err := st.SetMethodStatus(ctx, uuid.NewString(), payflow.MethodExpired); !errors.Is(err, payflow.ErrNotFound) {
		t.Fatalf("unknown id: %v", err)
	}
	if err := st.SetMethodStatus(ctx, "nope", payflow.MethodExpired); !errors.Is(err, payflow.ErrNotFound) {
		t.Fatalf("malformed id: %v", err)
	}
	for _, bad := range []payflow.MethodStatus{payflow.MethodDeleted, "", "stolen"} {
		if err := st.SetMethodStatus(ctx, a.ID, bad); err == nil || errors.Is(err, payflow.ErrNotFound) {
			t.Fatalf("status %q: %v, want a refusal", bad, err)
		}
	}
	if err := st.DeleteMethod(ctx, "mem", a.ID); err != nil {
		t.Fatal(err)
	}
	if err := st.SetMethodStatus(ctx, a.ID, payflow.MethodActive); !errors.Is(err, payflow.ErrNotFound) {
		t.Fatalf("reviving a deleted method: %v, want ErrNotFound", err)
	}
}

func TestMethodsNewOneReplacesAnUnusableDefault(t *testing.T) {
	st := testdb.New(t)
	ctx := context.Background()
	a := pmAdd(t, st, "mem", "A", true)
	if err := st.SetMethodStatus(ctx, a.ID, payflow.MethodInvalid); err != nil {
		t.Fatal(err)
	}
	b := pmAdd(t, st, "mem", "B", false)
	if !b.Default {
		t.Fatal("a new card did not replace an unusable default")
	}
	if got := pmLabels(t, st, "mem"); got != "B* A/invalid " {
		t.Fatalf("list = %q", got)
	}
}

func TestMethodsAddRefusesBadInput(t *testing.T) {
	st := testdb.New(t)
	ctx := context.Background()
	for name, m := range map[string]payflow.PaymentMethod{
		"no id":         {MemberID: "mem", Label: "A", BillingKeyEnc: []byte("x")},
		"id not a uuid": {ID: "1", MemberID: "mem", Label: "A", BillingKeyEnc: []byte("x")},
		"no member":     {ID: uuid.NewString(), Label: "A", BillingKeyEnc: []byte("x")},
		"no sealed key": {ID: uuid.NewString(), MemberID: "mem", Label: "A"},
	} {
		if _, err := st.AddMethod(ctx, m); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if got := pmLabels(t, st, "mem"); got != "" {
		t.Fatalf("something was stored: %q", got)
	}
}

func TestMethodsConcurrentAddsKeepOneDefault(t *testing.T) {
	st := testdb.New(t)
	const n = 12
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			_, err := st.AddMethod(context.Background(), payflow.PaymentMethod{ID: uuid.NewString(), MemberID: "mem",
				Label: fmt.Sprint("card-", i), Default: i%3 == 0, BillingKeyEnc: []byte("x")})
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	ms, err := st.ListMethods(context.Background(), "mem")
	if err != nil {
		t.Fatal(err)
	}
	defaults := 0
	for _, m := range ms {
		if m.Default {
			defaults++
		}
	}
	if len(ms) != n || defaults != 1 || !ms[0].Default {
		t.Fatalf("%d methods, %d defaults (first is default: %v); want %d and exactly 1", len(ms), defaults, len(ms) > 0 && ms[0].Default, n)
	}
}
