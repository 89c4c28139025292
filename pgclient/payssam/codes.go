package payssam

import (
	"errors"
	"strings"

	"github.com/payflow/payflow/pgclient"
)

// Codes with a meaning payflow acts on beyond their kind.
const (
	// CodePointsExhausted: the partner's 쌤포인트 ran out, so KakaoTalk bills
	// cannot be sent until someone tops them up. Kind transient (nothing was
	// sent); alert a human on it (PointsExhausted).
	CodePointsExhausted = "POINT_001"
	// CodeHashMismatch: PaySSam computed another hash (a bug on our side,
	// or a field changed on the way). Kind invalid.
	CodeHashMismatch = "VALIDATION_002"
	// CodeBillNotFound: PaySSam has no such bill. Kind not_found.
	CodeBillNotFound = "BILL_003"
	// CodeDuplicateBillV1: the bill id was used before (the v1 code, which
	// the v2 guide still gives). Kind duplicate.
	CodeDuplicateBillV1 = "9800"
	// CodeAlreadyCancelledV1 / CodeAlreadyPaidV1: the v1 codes of a cancel
	// or destroy that does not fit the bill's state. Kind conflict.
	CodeAlreadyCancelledV1 = "9970"
	CodeAlreadyPaidV1      = "9971"
)

// Codes the adapter itself puts on errors (not PaySSam's).
const (
	// CodeUnknownState: a read answered a state other than F/W/C/D. Kind
	// unknown: payflow cannot tell what happened to the bill. (An unmapped
	// PaySSam code is kept as it came, with kind invalid.)
	CodeUnknownState = "unknown_state"
	// CodeURLNotStored: PaySSam has no call that returns a bill's link
	// again, and neither this process nor Config.StoredURL knows it.
	CodeURLNotStored = "url_not_stored"
	// CodeUnknownMerchant: the request's merchant has no PaySSam store code
	// in Config.Merchants.
	CodeUnknownMerchant = "unknown_merchant"
)

// codeKinds maps every PaySSam code the digest of the API lists (v2, and v1
// where the v2 guide still gives v1 codes) onto pgclient kinds.
//
// The rule for any code NOT in this table (and not in a family below) is
// KindInvalid: PaySSam answered, well-formed, that it did not do what was
// asked, for a reason we cannot read. KindUnknown would make the worker look
// the bill up and send the same request again until its retry budget ran
// out, a retry loop against a refusal that will come back the same;
// KindDeclined would fall back to a KakaoTalk bill or mark a card unusable
// on a guess. KindInvalid stops at once with the code kept in the error
// (and in the charge's failure reason) for a human to read. The one risk,
// a PaySSam that acted and answered an unknown code anyway, is left to
// reconciliation, which still looks the bill up.
var codeKinds = map[string]pgclient.Kind{
	// v2, official.
	"ERROR":       pgclient.KindUnknown, // unknown server error: it may have acted; look up first
	"PARTNER_001": pgclient.KindInvalid, // partner not enabled for v2 sub-business integration
	"PARTNER_002": pgclient.KindInvalid, // apiKey missing or malformed
	"PARTNER_003": pgclient.KindInvalid, // no partner/store/pay-method for the apiKey
	"PARTNER_004": pgclient.KindInvalid, // no sub-business mapping for the merchant
	"PARTNER_005": pgclient.KindInvalid, // partner does not exist
	"PARTNER_006": pgclient.KindInvalid, // no active partner contract
	"PARTNER_007": pgclient.KindInvalid, // "제공되지 않…" (text cut off): not provided
	// v2, third-party code (VALIDATION_002 and BILL_003 observed in the sandbox).
	CodeHashMismatch:    pgclient.KindInvalid,   // hash mismatch
	"BILL_001":          pgclient.KindInvalid,   // meaning unknown: treated like an unmapped code
	CodeBillNotFound:    pgclient.KindNotFound,  // bill not found
	"BILL_006":          pgclient.KindConflict,  // the bill is not in a state for this (e.g. sendable)
	CodePointsExhausted: pgclient.KindTransient, // no points: nothing sent; retry after a top-up, page a human
	"PAYMENT_001":       pgclient.KindUnknown,   // VAN failure: the approval may have happened; look up first
	"PAYMENT_002":       pgclient.KindUnknown,   // bank failure: likewise
	"MAINTAINED_METHOD": pgclient.KindTransient, // maintenance: refused before acting; retry later
	// v1, which the v2 guide still gives for some answers.
	"9999":                 pgclient.KindUnknown,   // error
	"5000":                 pgclient.KindUnknown,   // system error
	CodeDuplicateBillV1:    pgclient.KindDuplicate, // bill_id already used
	CodeAlreadyCancelledV1: pgclient.KindConflict,  // already cancelled
	CodeAlreadyPaidV1:      pgclient.KindConflict,  // already paid
	"9980":                 pgclient.KindNotFound,  // bill not found
	"9870":                 pgclient.KindInvalid,   // no sync target: the callback URL is wrong
	"1003":                 pgclient.KindInvalid,   // user not allowed
}

// codeFamilies classify the codes of a documented family that the table
// does not name: the VALIDATION_ and PARTNER_ families are refusals of the
// request or of the partner's setup, which no retry fixes.
var codeFamilies = []struct {
	prefix string
	kind   pgclient.Kind
}{
	{"VALIDATION_", pgclient.KindInvalid},
	{"PARTNER_", pgclient.KindInvalid},
}

// KindOfCode is the kind of a PaySSam answer code other than 0000, and
// whether the code is one the adapter knows (by name or by family). An
// unknown code is KindInvalid: see codeKinds for why.
func KindOfCode(code string) (pgclient.Kind, bool) {
	if k, ok := codeKinds[code]; ok {
		return k, true
	}
	for _, f := range codeFamilies {
		if strings.HasPrefix(code, f.prefix) {
			return f.kind, true
		}
	}
	return pgclient.KindInvalid, false
}

// PointsExhausted reports whether err is PaySSam saying the partner's
// points ran out: count it and alert someone to top them up, since every
// KakaoTalk bill fails until then.
func PointsExhausted(err error) bool {
	var e *pgclient.Error
	return errors.As(err, &e) && e.Code == CodePointsExhausted
}
