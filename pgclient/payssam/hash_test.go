package payssam_test

import (
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/payflow/payflow/pgclient/payssam"
)

// Vectors computed outside Go (sha256sum over the exact strings).
func TestHashVectors(t *testing.T) {
	cases := []struct{ billID, phone, price, want string }{
		// "T2026050100000000001,01012345678,10000": a /bill request.
		{"T2026050100000000001", "01012345678", "10000", "f53d6c8d5574ca93322fa6e86a780af3ea8afc9f331948b9dd11808ff88efc5c"},
		// "T2026050100000000001,10000": /bill/cancel, /bill/destroy.
		{"T2026050100000000001", "", "10000", "224b9e3d6ff494b6e726e02a349cbfa4dcbcd7497f303e588b8a9baf1de42418"},
	}
	for _, tc := range cases {
		if got := payssam.Hash(tc.billID, tc.phone, tc.price); got != tc.want {
			t.Errorf("Hash(%q, %q, %q) = %s, want %s", tc.billID, tc.phone, tc.price, got, tc.want)
		}
	}
}

// Each request type hashes the fields it carries: /bill with its phone,
// cancel and destroy without one.
func TestEachRequestHashesItsOwnFields(t *testing.T) {
	const id, phone, price = "T2026050100000000001", "01012345678", "10000"
	with := payssam.Hash(id, phone, price)
	without := payssam.Hash(id, "", price)
	if got := (payssam.BillRequest{BillID: id, Phone: phone, Price: price}).WantHash(); got != with {
		t.Errorf("bill hash = %s", got)
	}
	if got := (payssam.CancelRequest{BillID: id, Price: price}).WantHash(); got != without {
		t.Errorf("cancel hash = %s", got)
	}
	if got := (payssam.DestroyRequest{BillID: id, Price: price}).WantHash(); got != without {
		t.Errorf("destroy hash = %s", got)
	}
	if got := (payssam.RPBill{BillID: id, Price: price}).WantHash(); got != without {
		t.Errorf("rp hash = %s", got)
	}
}

func TestBillIDVectors(t *testing.T) {
	cases := []struct{ in, want string }{
		// A UUIDv7 with unix_ts_ms 0x019DE0EE6400 (in 2026), rand_a
		// 0x123, rand_b 0x0123456789abcdef less its variant bits: (0x019DE0EE6400123 << 43) | (rand_b >> 19), in base 36.
		{"019de0ee-6400-7123-8123-456789abcdef", billIDOf(0x019DE0EE6400, 0x123, 0x0123456789abcdef)},
	}
	for _, tc := range cases {
		if got := payssam.BillID(tc.in); got != tc.want {
			t.Errorf("BillID(%q) = %s, want %s", tc.in, got, tc.want)
		}
	}
}

// billIDOf computes the documented layout with plain uint64 arithmetic
// (independently of the adapter's big.Int code): 103 bits as a 64-bit high
// part and a 39-bit low part, in base 36.
func billIDOf(ts, randA, randB uint64) string {
	randB &= 1<<62 - 1
	top43 := randB >> 19
	// value = (ts<<12 | randA) << 43 | top43
	hi60 := ts<<12 | randA
	// Base 36 of hi60·2^43 + top43 by long division on two limbs of 2^43.
	digits := make([]byte, 0, 20)
	limbHi, limbLo := hi60, top43
	for range 20 {
		// (limbHi·2^43 + limbLo) / 36
		qHi, rHi := limbHi/36, limbHi%36
		cur := rHi<<43 | limbLo
		qLo, r := cur/36, cur%36
		limbHi, limbLo = qHi, qLo
		digits = append(digits, "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"[r])
	}
	for i, j := 0, len(digits)-1; i < j; i, j = i+1, j-1 {
		digits[i], digits[j] = digits[j], digits[i]
	}
	return string(digits)
}

func TestBillIDFitsAndIsStable(t *testing.T) {
	seen := map[string]string{}
	for range 20000 {
		id := uuid.Must(uuid.NewV7()).String()
		got := payssam.BillID(id)
		if len(got) != payssam.BillIDLen || strings.Trim(got, "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ") != "" {
			t.Fatalf("BillID(%s) = %q: not 20 of 0-9A-Z", id, got)
		}
		if got != payssam.BillID(id) {
			t.Fatal("not deterministic")
		}
		if prev, dup := seen[got]; dup {
			t.Fatalf("%s and %s both map to %s", prev, id, got)
		}
		seen[got] = id
	}
	// Ids made in the same order sort the same way (the timestamp leads).
	a, b := uuid.Must(uuid.NewV7()).String(), uuid.Must(uuid.NewV7()).String()
	if !(payssam.BillID(a) < payssam.BillID(b)) {
		t.Fatalf("%s then %s map out of order", a, b)
	}
}

// Strings that are not canonical UUIDv7s are hashed into a range the
// UUIDv7 images never reach; another spelling of a UUID is another id.
func TestBillIDOfOtherStrings(t *testing.T) {
	v7 := uuid.Must(uuid.NewV7()).String()
	others := []string{"b_" + uuid.NewString(), uuid.NewString(), strings.ToUpper(v7), strings.ReplaceAll(v7, "-", ""), "x"}
	max7 := payssam.BillID("ffffffff-ffff-7fff-bfff-ffffffffffff")
	seen := map[string]bool{payssam.BillID(v7): true}
	for _, o := range others {
		got := payssam.BillID(o)
		if len(got) != payssam.BillIDLen || got <= max7 {
			t.Errorf("BillID(%q) = %s, not above the UUIDv7 range (max %s)", o, got, max7)
		}
		if seen[got] {
			t.Errorf("BillID(%q) = %s collides", o, got)
		}
		seen[got] = true
	}
}

func TestNormalizePhone(t *testing.T) {
	for in, want := range map[string]string{
		"+821012345678":    "01012345678",
		"+82 10-1234-5678": "01012345678",
		"+8201012345678":   "01012345678",
		"010-1234-5678":    "01012345678",
		"0111234567":       "0111234567",
	} {
		if got, ok := payssam.NormalizePhone(in); !ok || got != want {
			t.Errorf("NormalizePhone(%q) = %q %v, want %q", in, got, ok, want)
		}
	}
	for _, bad := range []string{"", "+14155550123", "0212345678", "010123", "010-1234-56789", "01012345678a", "010+12345678"} {
		if got, ok := payssam.NormalizePhone(bad); ok {
			t.Errorf("NormalizePhone(%q) = %q, want refused", bad, got)
		}
	}
}

// UUIDPrefix gives back the start of every UUIDv7 bill id, and nothing for
// other images.
func TestUUIDPrefixInvertsBillID(t *testing.T) {
	for range 2000 {
		id := uuid.Must(uuid.NewV7()).String()
		p, ok := payssam.UUIDPrefix(payssam.BillID(id))
		if !ok || len(p) != 31 || !strings.HasPrefix(id, p) {
			t.Fatalf("prefix of %s: %q %v", id, p, ok)
		}
	}
	for _, s := range []string{payssam.BillID("test-bill-1"), "", "abc", "T2026050100000000001x", "a2026050100000000001"} {
		if p, ok := payssam.UUIDPrefix(s); ok {
			t.Fatalf("prefix of %q: %q", s, p)
		}
	}
}
