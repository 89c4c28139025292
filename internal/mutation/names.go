package mutation

// Names are the bugs that can be put back, each a money bug found by review
// and fixed, or a guard taken away; the comment says which failure window
// it reopens. Found lists
// those the simulation finds today (docs/reliability.md says why the
// others are not).
var Names = []string{
	"own-lease",        // a duplicate re-drives a charge inside its holder's own lease
	"resume-known",     // a resumed drive trusts that the dead holder never reached the PG
	"kakao-fallback",   // a declined KakaoTalk bill falls back to another KakaoTalk bill
	"no-fence",         // a worker that lost its lease still records its result
	"judge-again",      // a rejected request is judged again on redelivery
	"no-wait",          // a request is judged while its charge is still busy
	"key-blip",         // a transient key-source error declines the card
	"unsigned",         // a callback's signature is not checked: a forged one settles a bill
	"repay-prefix",     // a merchant refund id may look like a re-payment's refund step's
	"lease-from-drive", // a drive counts its lease from when it starts, not from the claim
	"deadline-once",    // a drive checks its lease before a look-up, not again before the call
	"repay-unfenced",   // a re-payment judged under a lease that ran out is still recorded
	"refund-unfenced",  // a refund judged under a lease that ran out is still stored
	"cancel-unfenced",  // a cancel judged under a lease that ran out is still recorded
	"reject-unfenced",  // a rejection judged under a lease that ran out is still recorded
}

// Found are the mutations the simulation is expected to find; CI fails if
// one of them is no longer found.
var Found = []string{"resume-known", "kakao-fallback", "judge-again", "no-wait", "key-blip", "unsigned", "repay-prefix", "lease-from-drive", "deadline-once"}
