//go:build !production

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/google/uuid"
	"github.com/segmentio/kafka-go"
	"github.com/spf13/cobra"

	"github.com/payflow/payflow/events"
)

func demoCmd() *cobra.Command {
	var f devFlags
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run dev plus a scripted set of charges, refunds, a re-payment and a cancel; exit 0 only if all end as expected",
		RunE: func(cmd *cobra.Command, _ []string) error {
			log := newLogger("text", slog.LevelWarn)
			d, err := startDev(cmd.Context(), f, log, cmd.OutOrStdout())
			if err != nil {
				return err
			}
			defer d.Close()
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			return runDemo(ctx, d, cmd.OutOrStdout(), nil)
		},
	}
	f.register(cmd)
	cmd.Flags().DurationVar(&timeout, "timeout", 90*time.Second, "give up waiting for results after this long")
	return cmd
}

const demoMerchant = "demo-merchant"

// scenario is one scripted request and the results it must produce.
type scenario struct {
	name   string
	charge string
	// want lists, in order, the result types the charge must reach, each
	// with the data fields that must match.
	want []expect
	// after names a scenario whose last result must arrive before this
	// one's request is sent (refunds need a paid charge).
	after string
	event func() []byte
}

type expect struct {
	typ  string
	data map[string]any
}

func (e expect) String() string {
	var parts []string
	for k, v := range e.data {
		parts = append(parts, fmt.Sprintf("%s=%v", k, v))
	}
	short := strings.TrimPrefix(e.typ, "payment.")
	if len(parts) == 0 {
		return short
	}
	return short + "(" + strings.Join(parts, ",") + ")"
}

func demoEvent(typ string, data map[string]any) func() []byte {
	return func() []byte {
		data["merchant_id"] = demoMerchant
		b, _ := json.Marshal(map[string]any{
			"specversion": "1.0", "id": uuid.NewString(), "source": "payflow-demo", "type": typ,
			"subject": data["charge_id"], "time": time.Now().UTC().Format(events.TimeFormat),
			"datacontenttype": "application/json", "data": data,
		})
		return b
	}
}

func chargeData(id string, amount any, member, phone string) map[string]any {
	c := map[string]any{"phone": phone, "name": "Demo Customer"}
	if member != "" {
		c["member_id"] = member
	}
	return map[string]any{"charge_id": id, "amount": amount, "currency": "KRW", "order_name": "demo order " + id, "customer": c}
}

// demoRecord, when runDemo is given one, keeps the message values the demo
// sent and those it read back (each result once), for a test to hold to
// the contract.
type demoRecord struct {
	Requests [][]byte
	Results  [][]byte
}

func runDemo(ctx context.Context, d *devEnv, out io.Writer, rec *demoRecord) error {
	if rec == nil {
		rec = &demoRecord{}
	}
	run := uuid.NewString()[:8]
	id := func(s string) string { return "demo-" + run + "-" + s }
	// Members and their stored methods, through the API as an app would.
	for member, key := range map[string]string{"card-" + run: "bk_live_4242", "declined-" + run: "decline_5555"} {
		if err := registerMethod(ctx, d.HTTP, d.PlatformToken, member, key); err != nil {
			return err
		}
	}
	processed := func(method, reason string) expect {
		e := expect{events.TypeChargeProcessed, map[string]any{"method": method}}
		if reason != "" {
			e.data["fallback_reason"] = reason
		}
		return e
	}
	paid := expect{events.TypeSettled, map[string]any{"status": "paid"}}
	sc := []scenario{
		{name: "member with a stored card", charge: id("card"), event: demoEvent(events.TypeChargeRequested, chargeData(id("card"), 15000, "card-"+run, "010-1111-2222")),
			want: []expect{processed("auto_pay", ""), paid}},
		{name: "member without a method", charge: id("nomethod"), event: demoEvent(events.TypeChargeRequested, chargeData(id("nomethod"), 8000, "nomethod-"+run, "010-3333-4444")),
			want: []expect{processed("kakao_bill", "no_method"), paid}},
		{name: "not a member", charge: id("guest"), event: demoEvent(events.TypeChargeRequested, chargeData(id("guest"), 12000, "", "+821055556666")),
			want: []expect{processed("kakao_bill", "not_member"), paid}},
		{name: "declined card falls back", charge: id("declined"), event: demoEvent(events.TypeChargeRequested, chargeData(id("declined"), 9900, "declined-"+run, "010-7777-8888")),
			want: []expect{processed("kakao_bill", "method_declined"), paid}},
		{name: "invalid amount", charge: id("invalid"), event: demoEvent(events.TypeChargeRequested, chargeData(id("invalid"), -500, "", "010-1234-5678")),
			want: []expect{{events.TypeRejected, map[string]any{"reason": "invalid"}}}},
		{name: "duplicate delivery", charge: id("card"), after: "member with a stored card",
			event: demoEvent(events.TypeChargeRequested, chargeData(id("card"), 15000, "card-"+run, "010-1111-2222"))},
		{name: "partial refund", charge: id("guest"), after: "not a member",
			event: demoEvent(events.TypeRefundRequested, map[string]any{"charge_id": id("guest"), "refund_id": id("r1"), "amount": 2000, "reason": "one item returned"}),
			want:  []expect{{events.TypeRefundSucceeded, map[string]any{"amount": 2000.0, "refunded_total": 2000.0}}}},
		{name: "full refund", charge: id("card"), after: "member with a stored card",
			event: demoEvent(events.TypeRefundRequested, map[string]any{"charge_id": id("card"), "refund_id": id("r2"), "amount": 15000, "reason": "order cancelled"}),
			want:  []expect{{events.TypeRefundSucceeded, map[string]any{"refunded_total": 15000.0}}}},
		{name: "over-refund", charge: id("card"), after: "full refund",
			event: demoEvent(events.TypeRefundRequested, map[string]any{"charge_id": id("card"), "refund_id": id("r3"), "amount": 1, "reason": "too much"}),
			want:  []expect{{events.TypeRejected, map[string]any{"reason": "amount_exceeds_paid"}}}},
		{name: "re-payment", charge: id("nomethod"), after: "member without a method",
			event: demoEvent(events.TypeRepayRequested, map[string]any{"charge_id": id("nomethod"), "repay_id": id("p1"), "amount": 7000}),
			want:  []expect{{events.TypeRepayProcessed, map[string]any{"method": "kakao_bill"}}, paid}},
		{name: "unpaid bill to cancel", charge: id("cancel"), event: demoEvent(events.TypeChargeRequested, chargeData(id("cancel"), 3000, "", "010-9999-0000")),
			want: []expect{processed("kakao_bill", "not_member")}},
		{name: "cancel", charge: id("cancel"), after: "unpaid bill to cancel",
			event: demoEvent(events.TypeCancelRequested, map[string]any{"charge_id": id("cancel"), "reason": "customer changed their mind"}),
			want:  []expect{{events.TypeBillCancelled, nil}}},
		{name: "refund of an unknown charge", charge: id("nope"),
			event: demoEvent(events.TypeRefundRequested, map[string]any{"charge_id": id("nope"), "refund_id": id("r4"), "amount": 100, "reason": "x"}),
			want:  []expect{{events.TypeRejected, map[string]any{"reason": "unknown_charge"}}}},
	}

	if d.Provider == providerPaySSam {
		sc = paySSamScenarios(sc, processed, paid)
	}

	w := &kafka.Writer{Addr: kafka.TCP(d.Kafka), Topic: events.TopicRequests, Balancer: &kafka.Hash{}, BatchTimeout: 2 * time.Millisecond, RequiredAcks: kafka.RequireAll}
	defer w.Close()
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: []string{d.Kafka}, GroupID: "payflow-demo-" + run, Topic: events.TopicEvents, MaxWait: 100 * time.Millisecond})
	defer r.Close()

	// Results by charge, in arrival order, deduplicated by event id as a
	// consumer must.
	got := map[string][]map[string]any{}
	seen := map[string]bool{}
	type result struct {
		ev    map[string]any
		value []byte
	}
	incoming := make(chan result, 256)
	go func() {
		for {
			m, err := r.ReadMessage(ctx)
			if err != nil {
				close(incoming)
				return
			}
			var ev map[string]any
			if json.Unmarshal(m.Value, &ev) == nil {
				incoming <- result{ev, m.Value}
			}
		}
	}()

	sent := map[string]bool{}
	done := func(s scenario) bool { return matched(s, got[s.charge]) == len(s.want) }
	byName := map[string]scenario{}
	for _, s := range sc {
		byName[s.name] = s
	}
	start := time.Now()
	fmt.Fprintf(out, "\nrunning %d demo scenarios (run %s)...\n", len(sc), run)
	for {
		for _, s := range sc {
			if sent[s.name] || (s.after != "" && (!sent[s.after] || !done(byName[s.after]))) {
				continue
			}
			v := s.event()
			if err := w.WriteMessages(ctx, kafka.Message{Key: []byte(s.charge), Value: v}); err != nil {
				return fmt.Errorf("demo: publish: %w", err)
			}
			rec.Requests = append(rec.Requests, v)
			sent[s.name] = true
		}
		all := true
		for _, s := range sc {
			if !sent[s.name] || !done(s) {
				all = false
			}
		}
		if all {
			// Give a duplicate a moment to show itself before judging.
			time.Sleep(500 * time.Millisecond)
		}
		drained := false
		for !drained {
			select {
			case res, ok := <-incoming:
				if !ok {
					return report(out, sc, got, sent, time.Since(start), ctx.Err())
				}
				ev := res.ev
				if id, _ := ev["id"].(string); !seen[id] {
					seen[id] = true
					rec.Results = append(rec.Results, res.value)
					sub, _ := ev["subject"].(string)
					got[sub] = append(got[sub], ev)
				}
			case <-time.After(50 * time.Millisecond):
				drained = true
			}
		}
		if all {
			return report(out, sc, got, sent, time.Since(start), nil)
		}
		if ctx.Err() != nil {
			return report(out, sc, got, sent, time.Since(start), ctx.Err())
		}
	}
}

// paySSamScenarios adapts the script to what PaySSam does: it cancels a
// payment only in full, so a partial refund is rejected not_supported; and
// no PaySSam code is known to mean a refused card, so the simulator in
// PaySSam mode charges the "declined" card like any other.
func paySSamScenarios(sc []scenario, processed func(method, reason string) expect, paid expect) []scenario {
	for i := range sc {
		switch sc[i].name {
		case "declined card falls back":
			sc[i].name = "stored card (PaySSam declines none)"
			sc[i].want = []expect{processed("auto_pay", ""), paid}
		case "partial refund":
			sc[i].name = "partial refund (PaySSam: full only)"
			sc[i].want = []expect{{events.TypeRejected, map[string]any{"reason": "not_supported"}}}
		}
	}
	return sc
}

// matched counts how many of s's expectations appear, in order, among the
// charge's results.
func matched(s scenario, evs []map[string]any) int {
	n := 0
	for _, ev := range evs {
		if n == len(s.want) {
			break
		}
		if fits(s.want[n], ev) {
			n++
		}
	}
	return n
}

func fits(e expect, ev map[string]any) bool {
	if ev["type"] != e.typ {
		return false
	}
	data, _ := ev["data"].(map[string]any)
	for k, v := range e.data {
		if data[k] != v {
			return false
		}
	}
	return true
}

func report(out io.Writer, sc []scenario, got map[string][]map[string]any, sent map[string]bool, took time.Duration, waitErr error) error {
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "\nSCENARIO\tCHARGE\tEXPECTED\tRESULT")
	failed := 0
	for _, s := range sc {
		var want []string
		for _, e := range s.want {
			want = append(want, e.String())
		}
		result := "ok"
		switch {
		case !sent[s.name]:
			result = "NOT SENT"
		case matched(s, got[s.charge]) < len(s.want):
			result = fmt.Sprintf("MISSING %s", s.want[matched(s, got[s.charge])])
		}
		if s.name == "duplicate delivery" {
			want = []string{"no second result"}
			if n := countType(got[s.charge], events.TypeChargeProcessed); n != 1 {
				result = fmt.Sprintf("FAILED: %d charge.processed", n)
			}
		}
		if result != "ok" {
			failed++
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", s.name, strings.TrimPrefix(s.charge, "demo-"), strings.Join(want, " → "), result)
	}
	_ = tw.Flush()
	fmt.Fprintf(out, "\n%d of %d scenarios reached their expected end state in %s\n", len(sc)-failed, len(sc), took.Round(time.Millisecond))
	if failed > 0 {
		if waitErr != nil {
			return fmt.Errorf("demo: %d scenarios failed (%v)", failed, waitErr)
		}
		return fmt.Errorf("demo: %d scenarios failed", failed)
	}
	return nil
}

func countType(evs []map[string]any, typ string) int {
	n := 0
	for _, ev := range evs {
		if ev["type"] == typ {
			n++
		}
	}
	return n
}

// registerMethod stores a default payment method for member through the
// API at apiURL, as the platform app does, with the platform token.
func registerMethod(ctx context.Context, apiURL, token, member, key string) error {
	body, _ := json.Marshal(map[string]any{"billing_key": key, "label": "Demo card", "default": true})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, apiURL+"/v1/members/"+url.PathEscape(member)+"/payment-methods", bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("register method: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("register method: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("register method for member %s: %s %s", member, resp.Status, b)
	}
	return nil
}
