package sim

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"github.com/payflow/payflow/events"
	"github.com/payflow/payflow/payflow"
	"github.com/payflow/payflow/pgclient"
)

// model is what payflow must guarantee, written apart from how it does it:
// the PG's ledger and the result events are read as an outsider would, and
// compared with what the requests allow. step checks what must hold after
// every step; final what must hold once the world is at rest.
type model struct {
	w       *World
	lastID  int64
	results []result
}

type result struct {
	id   int64
	typ  string
	data map[string]any
}

func newModel(w *World) *model { return &model{w: w} }

func (r result) String() string {
	s := strings.TrimPrefix(r.typ, "payment.") + " " + r.str("merchant_id") + "/" + r.str("charge_id")
	for _, k := range []string{"bill_id", "status", "method", "fallback_reason", "reason", "refund_id", "repay_id", "amount", "request_event_id"} {
		if x, ok := r.data[k]; ok && x != "" {
			s += fmt.Sprintf(" %s=%v", k, x)
		}
	}
	return s
}

func (r result) str(k string) string {
	s, _ := r.data[k].(string)
	return s
}

// load reads the result events written since the last look.
func (m *model) load(ctx context.Context) error {
	rows, err := m.w.db.Pool.Query(ctx, `SELECT id, value FROM outbox WHERE id > $1 ORDER BY id`, m.lastID)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var id int64
		var v []byte
		if err := rows.Scan(&id, &v); err != nil {
			return err
		}
		var ev struct {
			Type string         `json:"type"`
			Data map[string]any `json:"data"`
		}
		if err := json.Unmarshal(v, &ev); err != nil {
			return err
		}
		r := result{id: id, typ: ev.Type, data: ev.Data}
		m.results = append(m.results, r)
		m.lastID = id
		m.w.logf("      → %s", r)
	}
	return rows.Err()
}

type dbBill struct {
	id, status, merchant, charge string
	chargePK, repayPK            int64
	amount, paid, refunded       int64
	settled                      bool // settled_at is set
}

func (m *model) bills(ctx context.Context) (map[string]dbBill, error) {
	rows, err := m.w.db.Pool.Query(ctx, `SELECT b.bill_id, b.status, c.merchant_id, c.charge_id, b.charge_pk, coalesce(b.repay_pk, 0),
		b.amount, b.paid_amount, b.refunded_amount, b.settled_at IS NOT NULL FROM bills b JOIN charges c ON c.id = b.charge_pk`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]dbBill{}
	for rows.Next() {
		var b dbBill
		if err := rows.Scan(&b.id, &b.status, &b.merchant, &b.charge, &b.chargePK, &b.repayPK, &b.amount, &b.paid, &b.refunded, &b.settled); err != nil {
			return nil, err
		}
		out[b.id] = b
	}
	return out, rows.Err()
}

// step checks the invariants that hold at every moment: one result per
// result key, money at the PG within each charge's amount, and results in
// causal order.
func (m *model) step(ctx context.Context) ([]string, error) {
	if err := m.load(ctx); err != nil {
		return nil, err
	}
	var v []string
	count := map[string]int{}
	placed := map[string]int64{} // bill → outbox id of its placement result
	for _, r := range m.results {
		var key string
		switch r.typ {
		case events.TypeChargeProcessed, events.TypeChargeFailed:
			key = "placement of charge " + r.str("merchant_id") + "/" + r.str("charge_id")
			if rp := r.str("repay_id"); rp != "" {
				key = "re-payment " + r.str("merchant_id") + "/" + rp // its bill could not be placed
			}
			if r.typ == events.TypeChargeProcessed {
				placed[r.str("bill_id")] = r.id
			}
		case events.TypeRepayProcessed:
			key = "re-payment " + r.str("merchant_id") + "/" + r.str("repay_id")
			placed[r.str("bill_id")] = r.id
		case events.TypeRefundSucceeded, events.TypeRefundFailed:
			key = "refund " + r.str("merchant_id") + "/" + r.str("charge_id") + "/" + r.str("refund_id")
		case events.TypeSettled:
			key = "settlement of bill " + r.str("bill_id")
			if _, ok := placed[r.str("bill_id")]; !ok {
				v = append(v, fmt.Sprintf("bill %s settled before its placement was reported", r.str("bill_id")))
			}
		case events.TypeBillCancelled:
			key = "cancellation of bill " + r.str("bill_id")
		case events.TypeRejected:
			key = "rejection of request " + r.str("request_event_id")
			if r.str("reason") == events.RejectInvalidState && strings.Contains(r.str("detail"), string(payflow.StatePlacing)) {
				// "Still placing" means "not yet": only a settled state may refuse.
				v = append(v, fmt.Sprintf("request %s refused while its charge was still being placed", r.str("request_event_id")))
			}
		}
		if (r.typ == events.TypeChargeProcessed || r.typ == events.TypeRepayProcessed) && r.str("fallback_reason") == string(payflow.FallbackMethodInvalid) {
			if member, ok := m.goodCard(r.str("merchant_id"), r.str("charge_id")); ok {
				v = append(v, fmt.Sprintf("member %s's card was given up (method_invalid) though it was never deleted nor refused", member))
			}
		}
		count[key]++
		if count[key] == 2 {
			v = append(v, fmt.Sprintf("two results for the %s", key))
		}
	}
	v = append(v, m.w.broken...)
	bills, err := m.bills(ctx)
	if err != nil {
		return nil, err
	}
	type money struct{ net, max int64 }
	perCharge := map[int64]*money{}
	for id, p := range m.w.pg.Bills() {
		b, ok := bills[id]
		if !ok {
			v = append(v, fmt.Sprintf("the PG holds bill %s, which the database does not know", id))
			continue
		}
		if (b.status == "abandoned" || b.status == "declined") && (p.Status == pgclient.StatusRequested || p.Status == pgclient.StatusPaid) {
			v = append(v, fmt.Sprintf("bill %s of %s/%s: given up as %s, yet %s at the PG", id, b.merchant, b.charge, b.status, p.Status))
		}
		c := perCharge[b.chargePK]
		if c == nil {
			c = &money{}
			perCharge[b.chargePK] = c
		}
		c.max = max(c.max, b.amount)
		if p.Status == pgclient.StatusPaid {
			c.net += p.Amount - p.Refunded
		}
	}
	for _, b := range bills {
		if c := perCharge[b.chargePK]; c != nil {
			c.max = max(c.max, b.amount)
		}
		// Reconciliation reads only the bills without settled_at.
		if final := payflow.BillStatus(b.status).Final(); b.settled != final {
			v = append(v, fmt.Sprintf("bill %s of %s/%s is %s, settled_at set: %v", b.id, b.merchant, b.charge, b.status, b.settled))
		}
	}
	pks := make([]int64, 0, len(perCharge))
	for pk := range perCharge {
		pks = append(pks, pk)
	}
	sort.Slice(pks, func(i, j int) bool { return pks[i] < pks[j] })
	for _, pk := range pks {
		c := perCharge[pk]
		if c.net > c.max || c.net < 0 {
			v = append(v, fmt.Sprintf("charge #%d: the PG holds %d of the customer's money, the charge is for %d", pk, c.net, c.max))
		}
	}
	sort.Strings(v)
	return v, nil
}

// final checks what must hold once the world is at rest: every request has
// its one outcome, and the database and the PG agree on every bill.
func (m *model) final(ctx context.Context) ([]string, error) {
	v, err := m.step(ctx)
	if err != nil {
		return nil, err
	}
	bills, err := m.bills(ctx)
	if err != nil {
		return nil, err
	}
	pg := m.w.pg.Bills()
	ids := make([]string, 0, len(bills))
	for id := range bills {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	accepted := map[string]int{}
	for _, id := range ids {
		b := bills[id]
		p, atPG := pg[id]
		want := "abandoned"
		if atPG {
			want = string(p.Status)
			if p.Status == pgclient.StatusFailed && p.Decline != "" {
				want = "declined"
			}
		}
		if !atPG && b.status == "declined" {
			want = "declined" // an auto-pay whose stored method proved unusable is never sent
		}
		if b.status != want {
			v = append(v, fmt.Sprintf("bill %s of %s/%s: the database has it %s, the PG %s", id, b.merchant, b.charge, b.status, describe(p, atPG)))
		}
		if atPG && p.Status == pgclient.StatusPaid && (b.paid != p.Amount || b.refunded != p.Refunded) {
			v = append(v, fmt.Sprintf("bill %s: the database has %d paid and %d refunded, the PG %d and %d", id, b.paid, b.refunded, p.Amount, p.Refunded))
		}
		if atPG && p.Decline == "" {
			key := fmt.Sprintf("%s/%s placement %d", b.merchant, b.charge, b.repayPK)
			if accepted[key]++; accepted[key] == 2 {
				v = append(v, "two bills accepted at the PG for one "+key)
			}
		}
	}
	v = append(v, m.outcomes(ctx)...)
	sort.Strings(v)
	return v, nil
}

// goodCard reports the member of a charge whose every request names a
// member with a good card that was never deleted.
func (m *model) goodCard(merchant, charge string) (string, bool) {
	member := ""
	for _, r := range m.w.reqs {
		if r.typ != events.TypeChargeRequested || r.merchant != merchant || r.charge != charge {
			continue
		}
		if r.member == "" || !strings.HasPrefix(keyOf(r.member), "bk_") || m.w.methods.everDeleted[r.member] {
			return "", false
		}
		member = r.member
	}
	return member, member != ""
}

func describe(p pgclient.Payment, atPG bool) string {
	if !atPG {
		return "never received it"
	}
	if p.Decline != "" {
		return "declined it"
	}
	return "has it " + string(p.Status)
}

// outcomes checks that every request reached exactly one outcome.
func (m *model) outcomes(ctx context.Context) []string {
	var v []string
	rejected := map[string]bool{}
	placements := map[string]int{}
	cancelled := map[string]bool{}
	for _, r := range m.results {
		switch r.typ {
		case events.TypeRejected:
			rejected[r.str("request_event_id")] = true
		case events.TypeChargeProcessed, events.TypeChargeFailed:
			if r.str("repay_id") == "" {
				placements[r.str("merchant_id")+"/"+r.str("charge_id")]++
			}
		case events.TypeBillCancelled:
			cancelled[r.str("merchant_id")+"/"+r.str("charge_id")] = true
		}
	}
	// Requests of one content on one charge are one request, whatever event
	// carried them (a resend under a new event id is the same request).
	type group struct{ rejected bool }
	groups := map[string]*group{}
	groupOf := func(r request) *group {
		k := r.typ + " " + r.content + "@" + r.merchant + "/" + r.charge
		if groups[k] == nil {
			groups[k] = &group{}
		}
		return groups[k]
	}
	for _, r := range m.w.reqs {
		if rejected[r.eventID] {
			groupOf(r).rejected = true
		}
	}
	seen := map[string]bool{}
	for _, r := range m.w.reqs {
		if seen[r.eventID] {
			continue
		}
		seen[r.eventID] = true
		charge := r.merchant + "/" + r.charge
		g := groupOf(r)
		switch r.typ {
		case events.TypeChargeRequested:
			if !rejected[r.eventID] && placements[charge] != 1 {
				v = append(v, fmt.Sprintf("charge %s accepted (event %s) has %d placement results", charge, r.eventID, placements[charge]))
			}
		case events.TypeCancelRequested:
			if !rejected[r.eventID] && !cancelled[charge] {
				v = append(v, fmt.Sprintf("cancel of %s (event %s) neither refused nor carried out", charge, r.eventID))
			}
		case events.TypeRefundRequested:
			var status string
			var amount int64
			err := m.w.db.Pool.QueryRow(ctx, `SELECT r.status, r.amount FROM refunds r JOIN charges c ON c.id = r.charge_pk
				WHERE r.merchant_id = $1 AND r.kind = 'refund' AND r.refund_id = $2 AND c.charge_id = $3`, r.merchant, r.refundID, r.charge).Scan(&status, &amount)
			done := err == nil && status != "pending" && amount == r.amount
			switch {
			case g.rejected && done:
				v = append(v, fmt.Sprintf("refund %s of %s for %d both refused and carried out (event %s)", r.refundID, charge, r.amount, r.eventID))
			case !g.rejected && err == nil && status == "pending":
				v = append(v, fmt.Sprintf("refund %s of %s (event %s) still pending", r.refundID, charge, r.eventID))
			case !g.rejected && err != nil:
				// Stored under other content: this one must have been refused.
				v = append(v, fmt.Sprintf("refund %s of %s for %d (event %s) neither refused nor carried out", r.refundID, charge, r.amount, r.eventID))
			}
		case events.TypeRepayRequested:
			var step string
			err := m.w.db.Pool.QueryRow(ctx, `SELECT p.step FROM repays p JOIN charges c ON c.id = p.charge_pk
				WHERE p.merchant_id = $1 AND p.repay_id = $2 AND c.charge_id = $3`, r.merchant, r.repayID, r.charge).Scan(&step)
			switch {
			case g.rejected && err == nil:
				v = append(v, fmt.Sprintf("re-payment %s of %s both refused and carried out (event %s)", r.repayID, charge, r.eventID))
			case !g.rejected && (err != nil || (step != "done" && step != "failed")):
				v = append(v, fmt.Sprintf("re-payment %s of %s (event %s) neither refused nor finished (%s%v)", r.repayID, charge, r.eventID, step, err))
			}
		}
	}
	return v
}
