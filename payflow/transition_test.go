package payflow_test

import (
	"errors"
	"flag"
	"os"
	"strings"
	"testing"

	"github.com/payflow/payflow/payflow"
)

var update = flag.Bool("update", false, "rewrite DESIGN.md's generated charge transition table")

// The rules the rest of payflow relies on, stated one by one.
func TestChargeTransitions(t *testing.T) {
	type want struct {
		from payflow.ChargeState
		do   func(payflow.ChargeState) (payflow.ChargeState, error)
		to   payflow.ChargeState // "" for a refusal
	}
	settle := func(st payflow.SettleStatus) func(payflow.ChargeState) (payflow.ChargeState, error) {
		return func(s payflow.ChargeState) (payflow.ChargeState, error) { return s.Settle(st) }
	}
	refund := func(full bool) func(payflow.ChargeState) (payflow.ChargeState, error) {
		return func(s payflow.ChargeState) (payflow.ChargeState, error) { return s.Refund(full) }
	}
	for i, c := range []want{
		{payflow.StatePlacing, payflow.ChargeState.Accept, payflow.StateRequested},
		{payflow.StatePlacing, payflow.ChargeState.Decline, payflow.StatePlacing},
		{payflow.StatePlacing, payflow.ChargeState.FailPlacement, payflow.StatePlaceFailed},
		{payflow.StateRequested, payflow.ChargeState.Accept, ""}, // recorded once
		{payflow.StatePlaceFailed, payflow.ChargeState.FailPlacement, ""},
		{payflow.StatePlacing, settle(payflow.SettlePaid), ""}, // not placed yet
		{payflow.StateRequested, settle(payflow.SettlePaid), payflow.StatePaid},
		{payflow.StateRequested, settle(payflow.SettleFailed), payflow.StateFailed},
		{payflow.StateRequested, settle(payflow.SettleCancelled), payflow.StateCancelled},
		{payflow.StateRequested, settle(payflow.SettleExpired), payflow.StateExpired},
		{payflow.StatePlaceFailed, settle(payflow.SettlePaid), payflow.StatePaid}, // a late payment of an abandoned bill
		{payflow.StatePaid, settle(payflow.SettlePaid), ""},                       // settled at most once
		{payflow.StateRequested, settle("refunded"), ""},                          // no such status
		{payflow.StatePaid, refund(false), payflow.StatePaid},
		{payflow.StatePaid, refund(true), payflow.StateRefunded},
		{payflow.StateRefunded, refund(false), ""},
		{payflow.StateRequested, refund(true), ""},
		{payflow.StatePaid, payflow.ChargeState.Repay, payflow.StatePlacing},
		{payflow.StateRefunded, payflow.ChargeState.Repay, payflow.StatePlacing},
		{payflow.StateRequested, payflow.ChargeState.Repay, ""},
		{payflow.StatePlacing, payflow.ChargeState.Repay, ""},
		{payflow.StateFailed, payflow.ChargeState.Repay, ""},
		{payflow.StateRequested, payflow.ChargeState.Cancel, payflow.StateCancelled},
		{payflow.StatePaid, payflow.ChargeState.Cancel, ""},
		{payflow.StateCancelled, payflow.ChargeState.Cancel, ""},
		{payflow.StatePlacing, payflow.ChargeState.Cancel, ""},
	} {
		got, err := c.do(c.from)
		if c.to == "" {
			var te *payflow.TransitionError
			if !errors.As(err, &te) || !errors.Is(err, payflow.ErrTransition) || te.From != c.from || got != c.from {
				t.Errorf("case %d from %s: got %s, %v; want a TransitionError from %s", i, c.from, got, err, c.from)
			}
			continue
		}
		if err != nil || got != c.to {
			t.Errorf("case %d from %s: got %s, %v; want %s", i, c.from, got, err, c.to)
		}
	}
}

// Refusals read as the rejection details payflow has always sent.
func TestTransitionErrorDetails(t *testing.T) {
	for _, c := range []struct {
		err  error
		want string
	}{
		{second(payflow.StateRequested.Repay()), "charge is requested; only a paid charge can be re-paid"},
		{second(payflow.StatePaid.Cancel()), "charge is paid; only an unpaid bill can be cancelled"},
		{second(payflow.StateRequested.Refund(false)), "charge is requested, not paid"},
		{second(payflow.StatePaid.Accept()), "charge is paid; accept is not allowed"},
	} {
		if c.err == nil || c.err.Error() != c.want {
			t.Errorf("got %v, want %q", c.err, c.want)
		}
	}
}

func second(_ payflow.ChargeState, err error) error { return err }

// transitionTable is the charge state machine as DESIGN.md shows it,
// generated from Next over every state and event.
func transitionTable() string {
	var b strings.Builder
	b.WriteString("| from | event | to |\n|---|---|---|\n")
	for _, s := range payflow.ChargeStates {
		for _, ev := range payflow.ChargeEvents {
			next, err := s.Next(ev)
			if err != nil {
				continue
			}
			b.WriteString("| `" + string(s) + "` | `" + string(ev) + "` | `" + string(next) + "` |\n")
		}
	}
	b.WriteString("\nEvery other pair of state and event is refused (`payflow.TransitionError`).\n")
	return b.String()
}

const (
	tableBegin = "<!-- BEGIN charge transitions: generated from payflow.ChargeState.Next; go test ./payflow -run TestDesignChargeTable -update -->\n"
	tableEnd   = "<!-- END charge transitions -->"
)

// DESIGN.md's charge transition table is the code's: the test fails when
// they disagree (rewrite it with -update).
func TestDesignChargeTable(t *testing.T) {
	const path = "../DESIGN.md"
	doc, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	text := string(doc)
	i, j := strings.Index(text, tableBegin), strings.Index(text, tableEnd)
	if i < 0 || j < i {
		t.Fatalf("DESIGN.md has no generated charge transition table (between %q and %q)", strings.TrimSpace(tableBegin), tableEnd)
	}
	got, want := text[i+len(tableBegin):j], transitionTable()
	if got == want {
		return
	}
	if *update {
		if err := os.WriteFile(path, []byte(text[:i+len(tableBegin)]+want+text[j:]), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Errorf("DESIGN.md's charge transition table differs from the code (go test ./payflow -run TestDesignChargeTable -update):\n--- DESIGN.md\n%s\n--- code\n%s", got, want)
}

// Every state and event is listed, so the generated table misses none.
func TestChargeMachineListsEverything(t *testing.T) {
	seen := map[payflow.ChargeState]bool{}
	for _, s := range payflow.ChargeStates {
		seen[s] = true
	}
	for _, s := range payflow.ChargeStates {
		for _, ev := range payflow.ChargeEvents {
			if next, err := s.Next(ev); err == nil && !seen[next] {
				t.Errorf("%s --%s--> %s, a state ChargeStates does not list", s, ev, next)
			}
		}
	}
	for _, st := range []payflow.SettleStatus{payflow.SettlePaid, payflow.SettleFailed, payflow.SettleCancelled, payflow.SettleExpired} {
		found := false
		for _, ev := range payflow.ChargeEvents {
			found = found || ev == st.Event()
		}
		if !found {
			t.Errorf("the event of settling %s is not listed", st)
		}
	}
}
