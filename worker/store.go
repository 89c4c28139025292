package worker

import (
	"context"
	"time"

	"github.com/payflow/payflow/outbox"
	"github.com/payflow/payflow/payflow"
	"github.com/payflow/payflow/store"
)

// Store is what the worker needs of the database, by what it acts on;
// *store.Store is the implementation. Every method that changes state
// writes the result events it is given in the same transaction.
type Store interface {
	Charges
	Refunds
	Repays
	Settlements
	Rejections
}

// Charges: a charge's lease, its placement and what a placement leaves.
type Charges interface {
	CreateCharge(ctx context.Context, c payflow.NewCharge) (pk int64, created bool, err error)
	ChargeByKey(ctx context.Context, merchantID, chargeID string) (payflow.Charge, error)
	ChargeByPK(ctx context.Context, pk int64) (payflow.Charge, error)
	ClaimCharge(ctx context.Context, pk int64, owner string, lease time.Duration) (bool, error)
	AcquireCharge(ctx context.Context, pk int64, owner string, lease time.Duration) (payflow.Holder, error)
	ReleaseCharge(ctx context.Context, pk int64, h payflow.Holder) error
	ExpiredPlacing(ctx context.Context, limit int) ([]int64, error)
	FinishPlacing(ctx context.Context, r payflow.PlaceResult, msgs []outbox.Message) error
	Decline(ctx context.Context, pk int64, declined payflow.Bill, code payflow.DeclineCode, methodStatus payflow.MethodStatus,
		next payflow.Bill, owner string, lease time.Duration) error
	StorePGURL(ctx context.Context, billID, url string, expiresAt time.Time) error
}

// Refunds: a refund from its reservation to its result.
type Refunds interface {
	CreateRefund(ctx context.Context, r payflow.NewRefund) (pk int64, created bool, err error)
	RefundByKey(ctx context.Context, merchantID, refundID string) (payflow.Refund, error)
	RefundByPK(ctx context.Context, pk int64) (payflow.Refund, error)
	ClaimRefund(ctx context.Context, pk int64, owner string, lease time.Duration) (payflow.Holder, bool, error)
	ExpiredRefunds(ctx context.Context, limit int) ([]int64, error)
	RetryRefundLater(ctx context.Context, pk int64, wait time.Duration) error
	FinishRefund(ctx context.Context, pk int64, res payflow.RefundResult, msgs func(refundedTotal int64) ([]outbox.Message, error),
		next *payflow.RepayNext) (int64, error)
}

// Repays: a re-payment's record; its steps move with its refund and bill.
type Repays interface {
	CreateRepay(ctx context.Context, r payflow.NewRepay) (rp payflow.Repay, created bool, err error)
	RepayByKey(ctx context.Context, merchantID, repayID string) (payflow.Repay, error)
	RepayByPK(ctx context.Context, pk int64) (payflow.Repay, error)
}

// Settlements: a bill's final result, from a webhook or reconciliation,
// and a cancelled bill.
type Settlements interface {
	Settle(ctx context.Context, s payflow.Settlement, events func(payflow.SettledBill) ([]outbox.Message, error)) (payflow.SettleOutcome, payflow.BillStatus, error)
	AwaitingSettlement(ctx context.Context, age time.Duration, limit int) ([]store.Awaiting, error)
	ReconcileLater(ctx context.Context, billID string, wait time.Duration, reason string) error
	CancelBill(ctx context.Context, chargePK int64, billID string, h payflow.Holder, msgs []outbox.Message) error
}

// Rejections: a refused request, its one result.
type Rejections interface {
	Reject(ctx context.Context, r store.Rejection) error
	Rejected(ctx context.Context, r store.Request) (bool, error)
}

var _ Store = (*store.Store)(nil)
