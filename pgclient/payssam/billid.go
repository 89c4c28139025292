package payssam

import (
	"crypto/sha256"
	"fmt"
	"math/big"
	"strings"

	"github.com/google/uuid"
)

// BillIDLen is the length of every PaySSam bill id the adapter makes.
// PaySSam takes bill ids of 1–20 letters and digits chosen by the partner,
// unique per partner.
const BillIDLen = 20

// billIDAlphabet: digits and upper-case letters only. PaySSam says "letters
// and digits" without saying whether it compares them case-sensitively (a
// case-insensitive database collation is common); ids that differ only in
// case could collide there, so the adapter never relies on case.
const billIDAlphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"

var (
	two103  = new(big.Int).Lsh(big.NewInt(1), 103)
	base36  = big.NewInt(36)
	mask43  = uint64(1)<<43 - 1
	mask101 = new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 101), big.NewInt(1))
)

// BillID maps a payflow bill id onto the PaySSam bill id the adapter uses
// for it on every call: 20 characters of 0-9 and A-Z, the same for the same
// input, always.
//
// payflow's bill ids are UUIDv7 strings (canonical, lower case). 20 base-36
// characters hold 103 bits (36^20 ≈ 2^103.4) and a UUIDv7 has 122 bits that
// vary, so the mapping keeps the bits that make ids unique in practice and
// drops 19 random ones:
//
//	48 bits  unix_ts_ms   (the millisecond the id was made)
//	12 bits  rand_a       (google/uuid: the sub-millisecond clock, 256 ns steps,
//	                       strictly increasing within one process)
//	43 bits  the top of rand_b (random)
//
// Why two payflow bill ids cannot collide in practice: ids made by one
// process differ in (unix_ts_ms, rand_a), which google/uuid's generator never
// repeats in a process. Ids made by different processes collide only if they
// were made in the same 256 ns step and also agree on 43 random bits: a
// chance of 2^-43 (about 10^-13) for each such pair, and such pairs are
// themselves rare. A generator whose rand_a is random (RFC 9562 method 1)
// still leaves 55 random bits per millisecond: with 10,000 bills in one
// millisecond the chance of any collision in it is below 10^-8.
//
// Any other string (not a canonical UUIDv7: test ids, another scheme) maps
// to 2^103 + the first 101 bits of its SHA-256, which is above every
// UUIDv7 image (< 2^103) and still below 36^20: the two families never
// meet, and within the second one a collision needs 101 equal hash bits
// (about one in 10^17 with a billion ids).
//
// The mapping is one-way: a PaySSam bill id (in a callback, say) is traced
// back by storing BillID(billID) with the bill or by computing it for the
// candidate bills.
func BillID(billID string) string {
	n := new(big.Int)
	if u, err := uuid.Parse(billID); err == nil && u.Version() == 7 && u.Variant() == uuid.RFC4122 && u.String() == billID {
		var hi, lo uint64
		for _, b := range u[0:8] {
			hi = hi<<8 | uint64(b)
		}
		for _, b := range u[8:16] {
			lo = lo<<8 | uint64(b)
		}
		ts := hi >> 16        // 48 bits
		randA := hi & 0x0fff  // 12 bits (the version nibble dropped)
		randB := lo << 2 >> 2 // 62 bits (the variant dropped)
		top43 := randB >> 19  // its top 43 bits
		n.SetUint64(ts<<12 | randA)
		n.Lsh(n, 43)
		n.Or(n, new(big.Int).SetUint64(top43&mask43))
	} else {
		sum := sha256.Sum256([]byte(billID))
		n.SetBytes(sum[:])
		n.Rsh(n, 256-101)
		n.And(n, mask101)
		n.Add(n, two103)
	}
	out := make([]byte, BillIDLen)
	m := new(big.Int)
	for i := BillIDLen - 1; i >= 0; i-- {
		n.DivMod(n, base36, m)
		out[i] = billIDAlphabet[m.Int64()]
	}
	return string(out)
}

// UUIDPrefix inverts BillID as far as it can for the UUIDv7 family: the
// first 31 characters ("tttttttt-tttt-7aaa-vvvv-rrrrrrr") of every payflow
// bill id whose BillID is psID; ok is false when psID is not such an
// image (not 20 characters of 0-9A-Z, or of the hashed family). Those
// characters hold the timestamp, rand_a and 42 of the 43 bits of rand_b the
// image keeps: candidates that share them are told apart by BillID.
func UUIDPrefix(psID string) (prefix string, ok bool) {
	if len(psID) != BillIDLen {
		return "", false
	}
	n := new(big.Int)
	for i := 0; i < len(psID); i++ {
		d := strings.IndexByte(billIDAlphabet, psID[i])
		if d < 0 {
			return "", false
		}
		n.Mul(n, base36)
		n.Add(n, big.NewInt(int64(d)))
	}
	if n.Cmp(two103) >= 0 {
		return "", false
	}
	top43 := new(big.Int).And(n, new(big.Int).SetUint64(mask43)).Uint64()
	head := new(big.Int).Rsh(n, 43).Uint64() // ts<<12 | rand_a
	ts, randA := head>>12, head&0x0fff
	return fmt.Sprintf("%08x-%04x-7%03x-%04x-%07x", ts>>16, ts&0xffff, randA, 0x8000|top43>>29, (top43>>1)&0xfffffff), true
}
