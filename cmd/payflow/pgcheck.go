package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/spf13/cobra"

	"github.com/payflow/payflow/payflow"
	"github.com/payflow/payflow/pgclient"
	"github.com/payflow/payflow/pgclient/payssam"
)

// pgCmd groups the commands about the PG itself.
func pgCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "pg", Short: "Commands about the PG: check an adapter against the real PG before going live"}
	cmd.AddCommand(pgCheckCmd())
	return cmd
}

// pgCheckCmd runs each PG operation once against the real PG (its
// sandbox), with the adapter payflow uses, and prints what matched the
// adapter's reading of the API and what differed. It is the checklist for
// PaySSam's integration review (검수); nothing of it runs in serve.
func pgCheckCmd() *cobra.Command {
	var (
		pgf      pgFlags
		provider string
		phone    string
		merchant string
		amount   int64
		pay      bool
		wait     time.Duration
		timeout  time.Duration
	)
	cmd := &cobra.Command{
		Use:   "check",
		Short: "Run each PG operation once against the PG's sandbox and print what matched and what differed",
		Long: `check runs, with payflow's own adapter and the PaySSam configuration of serve
(PAYFLOW_PAYSSAM_URL, PAYFLOW_PAYSSAM_API_KEY, PAYFLOW_PAYSSAM_MEMBER,
PAYFLOW_PAYSSAM_MERCHANTS, PAYFLOW_PAYSSAM_CALLBACK_URL):

  1. a KakaoTalk bill to --phone (the operator's own), then its lookup (W, the price);
  2. the same bill id again (must be refused as a duplicate);
  3. the lookup of a bill that does not exist (must be "not found");
  4. the destroy of the bill, then its lookup (D);
  5. with --pay: a second bill, paid by the operator with a real card from its link
     within --wait, its lookup (F, the price), its cancel in full and its lookup (C).

Point it at the sandbox (https://sandbox.paymint.co.kr/partner): every bill costs points,
and --pay makes a real card approval (the sandbox cancels it later; this check cancels it at once).
Exit code 0 only if everything matched.`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if provider != providerPaySSam {
				return usagef("--provider %q: only payssam can be checked", provider)
			}
			if _, ok := payssam.NormalizePhone(phone); !ok {
				return usagef("--phone must be the operator's own Korean mobile number (010…)")
			}
			if amount <= 0 || amount > payflow.MaxAmount {
				return usagef("--amount must be within 1..%d", payflow.MaxAmount)
			}
			ps, err := pgf.paySSam(os.Getenv("PAYFLOW_PAYSSAM_API_KEY"), timeout)
			if err != nil {
				return err
			}
			if merchant == "" {
				if len(ps.Adapter.Merchants) != 1 {
					return usagef("--merchant: PAYFLOW_PAYSSAM_MERCHANTS names several merchants; say which one to check")
				}
				for m := range ps.Adapter.Merchants {
					merchant = m
				}
			}
			if _, ok := ps.Adapter.Merchants[merchant]; !ok {
				return usagef("--merchant %q is not in PAYFLOW_PAYSSAM_MERCHANTS", merchant)
			}
			pg, err := payssam.New(ps.Adapter)
			if err != nil {
				return usagef("PaySSam configuration: %v", err)
			}
			c := &pgChecker{pg: pg, out: cmd.OutOrStdout(), merchant: merchant, phone: phone, amount: amount, wait: wait}
			c.run(cmd.Context(), pay)
			return c.verdict()
		},
	}
	fl := cmd.Flags()
	pgf.register(fl)
	fl.StringVar(&provider, "provider", providerPaySSam, "the PG to check: payssam")
	fl.StringVar(&phone, "phone", "", "the operator's own mobile number: the KakaoTalk bills go there")
	fl.StringVar(&merchant, "merchant", "", "the payflow merchant whose PaySSam store is used (default: the only one configured)")
	fl.Int64Var(&amount, "amount", 1000, "the bills' amount in KRW")
	fl.BoolVar(&pay, "pay", false, "also check a real card payment (paid by the operator from the bill's link) and its cancel")
	fl.DurationVar(&wait, "wait", 5*time.Minute, "with --pay: how long to wait for the operator to pay")
	fl.DurationVar(&timeout, "pg-timeout", pgclient.DefaultTimeout, "timeout of one PG call")
	return cmd
}

// pgChecker runs the steps and keeps score.
type pgChecker struct {
	pg                pgclient.Client
	out               io.Writer
	merchant, phone   string
	amount            int64
	wait              time.Duration
	matched, differed int
}

func (c *pgChecker) report(step string, ok bool, format string, a ...any) {
	mark := "ok  "
	if ok {
		c.matched++
	} else {
		mark = "DIFF"
		c.differed++
	}
	fmt.Fprintf(c.out, "%s  %-34s %s\n", mark, step, fmt.Sprintf(format, a...))
}

func (c *pgChecker) verdict() error {
	fmt.Fprintf(c.out, "\n%d matched, %d differed\n", c.matched, c.differed)
	if c.differed > 0 {
		return fmt.Errorf("pg check: %d of %d checks differed from the adapter's reading of the API (docs/pg/payssam.md)", c.differed, c.matched+c.differed)
	}
	return nil
}

// describe is an error as the report shows it: kind and PaySSam's code.
func describe(err error) string {
	var e *pgclient.Error
	if errors.As(err, &e) {
		return fmt.Sprintf("kind %s, code %q: %s", e.Kind, e.Code, e.Message)
	}
	return err.Error()
}

func (c *pgChecker) bill(ctx context.Context, step string) (string, bool) {
	id := uuid.Must(uuid.NewV7()).String()
	acc, err := c.pg.SendKakaoBill(ctx, pgclient.KakaoBillRequest{BillID: id, MerchantID: c.merchant, Phone: c.phone,
		Name: "payflow check", Amount: c.amount, OrderName: "payflow pg check"})
	if err != nil {
		c.report(step, false, "refused: %s", describe(err))
		return id, false
	}
	c.report(step, acc.URL != "", "PaySSam bill %s to %s, shortUrl %q", acc.PGTxID, payflow.MaskPhone(c.phone), acc.URL)
	return id, true
}

func (c *pgChecker) lookup(ctx context.Context, step, id string, want pgclient.PaymentStatus, refunded int64) pgclient.Payment {
	p, err := c.pg.LookupPayment(ctx, id)
	if err != nil {
		c.report(step, false, "lookup failed: %s", describe(err))
		return p
	}
	ok := p.Status == want && p.Amount == c.amount && p.Refunded == refunded
	c.report(step, ok, "state %s (want %s), amount %d (want %d), refunded %d (want %d)", p.Status, want, p.Amount, c.amount, p.Refunded, refunded)
	return p
}

func (c *pgChecker) run(ctx context.Context, pay bool) {
	fmt.Fprintf(c.out, "checking PaySSam with payflow's adapter (merchant %s)\n\n", c.merchant)
	id, ok := c.bill(ctx, "/bill sendType=TALK")
	if ok {
		c.lookup(ctx, "/bill/read of an unpaid bill", id, pgclient.StatusRequested, 0)
		_, err := c.pg.SendKakaoBill(ctx, pgclient.KakaoBillRequest{BillID: id, MerchantID: c.merchant, Phone: c.phone,
			Name: "payflow check", Amount: c.amount, OrderName: "payflow pg check"})
		c.report("/bill with a used billId", pgclient.KindOf(err) == pgclient.KindDuplicate,
			"want kind duplicate (code 9800 assumed): %s", errText(err))
	}
	_, err := c.pg.LookupPayment(ctx, uuid.Must(uuid.NewV7()).String())
	c.report("/bill/read of an unknown bill", pgclient.KindOf(err) == pgclient.KindNotFound, "want kind not_found (BILL_003): %s", errText(err))
	if ok {
		err := c.pg.DestroyBill(ctx, id)
		c.report("/bill/destroy of an unpaid bill", err == nil, "%s", errText(err))
		c.lookup(ctx, "/bill/read of a destroyed bill", id, pgclient.StatusCancelled, 0)
	}
	if !pay {
		fmt.Fprintf(c.out, "\n(--pay not given: the card payment, its cancel and the approval callback are not checked)\n")
		return
	}
	id, ok = c.bill(ctx, "/bill for a card payment")
	if !ok {
		return
	}
	fmt.Fprintf(c.out, "\n  pay the bill sent to %s with a real card within %s (Hyundai, KB Kookmin and Shinhan cards work in the sandbox)\n\n",
		payflow.MaskPhone(c.phone), c.wait)
	deadline := time.Now().Add(c.wait)
	var p pgclient.Payment
	for {
		p, err = c.pg.LookupPayment(ctx, id)
		if err == nil && p.Status != pgclient.StatusRequested || time.Now().After(deadline) || ctx.Err() != nil {
			break
		}
		time.Sleep(2 * time.Second)
	}
	if err != nil || p.Status != pgclient.StatusPaid {
		c.report("/bill/read after the payment", false, "state %s, %s: not paid in time", p.Status, errText(err))
		if err == nil && p.Status == pgclient.StatusRequested {
			_ = c.pg.DestroyBill(ctx, id)
		}
		return
	}
	c.lookup(ctx, "/bill/read after the payment", id, pgclient.StatusPaid, 0)
	_, err = c.pg.Refund(ctx, pgclient.RefundRequest{BillID: id, RefundID: "check-" + id, Amount: c.amount - 1, Reason: "payflow check", PaidAmount: c.amount})
	if c.amount > 1 {
		c.report("partial cancel refused unsent", pgclient.NotSupported(err), "want not_supported: %s", errText(err))
	}
	_, err = c.pg.Refund(ctx, pgclient.RefundRequest{BillID: id, RefundID: "check-" + id, Amount: c.amount, Reason: "payflow check"})
	c.report("/bill/cancel in full", err == nil, "%s", errText(err))
	c.lookup(ctx, "/bill/read of a cancelled bill", id, pgclient.StatusPaid, c.amount)
	fmt.Fprintf(c.out, "\n  the approval callback went to PAYFLOW_PAYSSAM_CALLBACK_URL: check payflow_webhooks_total{provider=\"payssam\"} there\n")
}

func errText(err error) string {
	if err == nil {
		return "0000"
	}
	return strings.TrimSpace(describe(err))
}
