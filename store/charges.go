package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/payflow/payflow/internal/mutation"
	"github.com/payflow/payflow/outbox"
	"github.com/payflow/payflow/payflow"
)

// CreateCharge stores a new charge in state placing together with its first
// bill, and leases it to the caller: from here on a crash cannot lose the
// request, and the bill id is known before the PG is called. When the
// charge already exists nothing is written and created is false.
func (s *Store) CreateCharge(ctx context.Context, c payflow.NewCharge) (pk int64, created bool, err error) {
	if s.creates == nil {
		r, err := s.createOne(ctx, s.createArgs(c))
		return r.pk, r.created, err
	}
	r, err := s.creates.do(ctx, s.createArgs(c))
	return r.pk, r.created, err
}

type createResult struct {
	pk      int64
	created bool
}

const createChargeSQL = `
WITH c AS (
	INSERT INTO charges (merchant_id, charge_id, request_hash, request_event_id, amount, order_name,
	                     member_id, phone, customer_name, state, current_bill_id, lease_owner, lease_until, created_at, updated_at)
	VALUES ($1, $2, $3, $4, $5, $6, nullif($7, ''), $8, $9, 'placing', $10, $11, coalesce($16::timestamptz, now()) + $12::interval, coalesce($16::timestamptz, now()), coalesce($16::timestamptz, now()))
	ON CONFLICT (merchant_id, charge_id) DO NOTHING
	RETURNING id
), b AS (
	INSERT INTO bills (bill_id, charge_pk, method, method_id, fallback_reason, amount, status, created_at, updated_at)
	SELECT $10, c.id, $13, nullif($14, '')::uuid, nullif($15, ''), $5, 'pending', coalesce($16::timestamptz, now()), coalesce($16::timestamptz, now()) FROM c
)
SELECT id FROM c`

// createArgs are CreateCharge's statement arguments, its time included:
// taken when the caller asks, not when its batch is sent.
func (s *Store) createArgs(c payflow.NewCharge) []any {
	r := c.Request
	return []any{r.MerchantID, r.ChargeID, c.RequestHash, c.RequestEventID, r.Amount, r.OrderName,
		r.Customer.MemberID, r.Customer.Phone, r.Customer.Name, c.Bill.BillID, c.LeaseOwner, c.Lease,
		string(c.Bill.Method), c.Bill.MethodID, string(c.Bill.FallbackReason), s.now()}
}

// createOne sends one CreateCharge statement alone.
func (s *Store) createOne(ctx context.Context, args []any) (createResult, error) {
	var pk int64
	err := s.Pool.QueryRow(ctx, createChargeSQL, args...).Scan(&pk)
	return createdFrom(pk, err)
}

func createdFrom(pk int64, err error) (createResult, error) {
	if errors.Is(err, pgx.ErrNoRows) {
		return createResult{}, nil
	}
	if err != nil {
		return createResult{}, fmt.Errorf("store: create charge: %w", err)
	}
	return createResult{pk: pk, created: true}, nil
}

// createMany sends several CreateCharge statements in one round trip and
// one transaction. The same charge twice is created once: the later
// statement sees the earlier one's row and does nothing.
func (s *Store) createMany(ctx context.Context, items [][]any, out []outcome[createResult]) error {
	b := &pgx.Batch{}
	for _, args := range items {
		b.Queue(createChargeSQL, args...)
	}
	br := s.Pool.SendBatch(ctx, b)
	for i := range items {
		var pk int64
		err := br.QueryRow().Scan(&pk)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			br.Close()
			return fmt.Errorf("store: create charges: %w", err)
		}
		out[i].res, _ = createdFrom(pk, err)
	}
	if err := br.Close(); err != nil {
		return fmt.Errorf("store: create charges: %w", err)
	}
	return nil
}

const chargeColumns = `c.id, c.merchant_id, c.charge_id, c.request_hash, c.request_event_id, c.amount, c.order_name,
	coalesce(c.member_id, ''), c.phone, c.customer_name, c.state, c.attempts,
	coalesce(c.lease_owner, ''), coalesce(c.lease_until, 'epoch'),
	coalesce(b.bill_id, ''), coalesce(b.method, ''), coalesce(b.method_id::text, ''), coalesce(b.fallback_reason, ''),
	coalesce(b.amount, 0), coalesce(b.status, ''), coalesce(b.pg_tx_id, ''), coalesce(b.repay_pk, 0)`

func scanCharge(row pgx.Row) (payflow.Charge, error) {
	var c payflow.Charge
	var state, method, fb, status string
	err := row.Scan(&c.PK, &c.MerchantID, &c.ChargeID, &c.RequestHash, &c.RequestEventID, &c.Amount, &c.OrderName,
		&c.MemberID, &c.Phone, &c.CustomerName, &state, &c.Attempts, &c.LeaseOwner, &c.LeaseUntil,
		&c.Bill.BillID, &method, &c.Bill.MethodID, &fb, &c.Bill.Amount, &status, &c.Bill.PGTxID, &c.Bill.RepayPK)
	if errors.Is(err, pgx.ErrNoRows) {
		return payflow.Charge{}, payflow.ErrNotFound
	}
	if err != nil {
		return payflow.Charge{}, fmt.Errorf("store: read charge: %w", err)
	}
	c.State, c.Bill.Method, c.Bill.FallbackReason, c.Bill.Status = payflow.ChargeState(state), payflow.Method(method), payflow.FallbackReason(fb), payflow.BillStatus(status)
	c.Bill.ChargePK = c.PK
	return c, nil
}

// ChargeByKey reads a merchant's charge and its current bill.
func (s *Store) ChargeByKey(ctx context.Context, merchantID, chargeID string) (payflow.Charge, error) {
	return scanCharge(s.Pool.QueryRow(ctx, `SELECT `+chargeColumns+`
		FROM charges c LEFT JOIN bills b ON b.bill_id = c.current_bill_id
		WHERE c.merchant_id = $1 AND c.charge_id = $2`, merchantID, chargeID))
}

// ChargeByPK reads a charge and its current bill.
func (s *Store) ChargeByPK(ctx context.Context, pk int64) (payflow.Charge, error) {
	return scanCharge(s.Pool.QueryRow(ctx, `SELECT `+chargeColumns+`
		FROM charges c LEFT JOIN bills b ON b.bill_id = c.current_bill_id
		WHERE c.id = $1`, pk))
}

// ErrBusy is returned when the charge is held: another worker (or this
// one, earlier) acts on it, it is still placing a bill, or a refund of it is
// in flight. A request that meets it waits and is tried again: "still
// placing" means "not yet", never "no".
var ErrBusy = errors.New("store: charge busy")

// ClaimCharge takes over a placing charge whose lease has expired: its
// holder died, or gave up with the outcome unknown. A held lease blocks
// every other drive, the holder's own included, until it expires: a request
// of the holder's may still be in flight. It reports whether the caller now
// holds the charge.
func (s *Store) ClaimCharge(ctx context.Context, pk int64, owner string, lease time.Duration) (bool, error) {
	tag, err := s.Pool.Exec(ctx, `UPDATE charges SET lease_owner = $2, lease_until = coalesce($5::timestamptz, now()) + $3::interval,
			lease_gen = lease_gen + 1, updated_at = coalesce($5::timestamptz, now())
		WHERE id = $1 AND state = 'placing' AND (lease_until IS NULL OR lease_until < coalesce($5::timestamptz, now()) OR ($4 AND lease_owner = $2))`,
		pk, owner, lease, mutation.On("own-lease"), s.now())
	if err != nil {
		return false, fmt.Errorf("store: claim charge: %w", err)
	}
	return tag.RowsAffected() == 1, nil
}

// AcquireCharge takes the lease of a charge that is at rest, for a request
// that acts on it (a refund, a re-payment, a cancel), and returns the
// taking: what the request is judged to be is written only while it holds
// (fence). It returns ErrBusy when anyone holds the charge, it is placing
// a bill, or a refund of it is pending: the request must wait for what
// came before it.
//
// The charge row is locked before the conditions are read, in a statement
// of their own: a refund stored by a transaction this one waited for is
// then seen, where one statement would judge the refunds as they were
// before the wait.
func (s *Store) AcquireCharge(ctx context.Context, pk int64, owner string, lease time.Duration) (payflow.Holder, error) {
	h := payflow.Holder{Owner: owner}
	err := pgx.BeginFunc(ctx, s.Pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT 1 FROM charges WHERE id = $1 FOR NO KEY UPDATE`, pk); err != nil {
			return err
		}
		err := tx.QueryRow(ctx, `UPDATE charges c SET lease_owner = $2, lease_until = coalesce($5::timestamptz, now()) + $3::interval,
				lease_gen = lease_gen + 1
			WHERE id = $1 AND ($4 OR (state <> 'placing' AND (lease_until IS NULL OR lease_until < coalesce($5::timestamptz, now()))
			  AND NOT EXISTS (SELECT 1 FROM refunds r WHERE r.charge_pk = c.id AND r.status = 'pending')))
			RETURNING lease_gen`,
			pk, owner, lease, mutation.On("no-wait"), s.now()).Scan(&h.Gen)
		if errors.Is(err, pgx.ErrNoRows) {
			return ErrBusy
		}
		return err
	})
	switch {
	case errors.Is(err, ErrBusy):
		return payflow.Holder{}, ErrBusy
	case err != nil:
		return payflow.Holder{}, fmt.Errorf("store: acquire charge: %w", err)
	}
	return h, nil
}

// fence locks the charge row and returns ErrStale unless h's taking of its
// lease still holds (an expired lease nobody has taken since still does):
// what follows in tx is written under that taking, and no other taking can
// begin before tx ends. mutation names the guard's mutation.
func fence(ctx context.Context, tx pgx.Tx, chargePK int64, h payflow.Holder, mutationName string) error {
	var held bool
	if err := tx.QueryRow(ctx, `SELECT coalesce(lease_owner = $2 AND lease_gen = $3, false) FROM charges WHERE id = $1 FOR NO KEY UPDATE`,
		chargePK, h.Owner, h.Gen).Scan(&held); err != nil {
		return err
	}
	if !held && !mutation.On(mutationName) {
		return ErrStale
	}
	return nil
}

// ReleaseCharge ends h's taking of the lease of a charge at rest; a later
// taking, by another process or by the same one, is left alone. A charge
// that went on to place a bill (a re-payment's) keeps its lease for that
// drive.
func (s *Store) ReleaseCharge(ctx context.Context, pk int64, h payflow.Holder) error {
	_, err := s.Pool.Exec(ctx, `UPDATE charges SET lease_owner = NULL, lease_until = NULL
		WHERE id = $1 AND lease_owner = $2 AND lease_gen = $3 AND state <> 'placing'`, pk, h.Owner, h.Gen)
	if err != nil {
		return fmt.Errorf("store: release charge: %w", err)
	}
	return nil
}

// ExpiredPlacing lists placing charges whose lease has expired: the PG call
// of a worker that crashed or gave up, whose outcome must still be settled.
func (s *Store) ExpiredPlacing(ctx context.Context, limit int) ([]int64, error) {
	rows, err := s.Pool.Query(ctx, `SELECT id FROM charges
		WHERE state = 'placing' AND lease_until < coalesce($2::timestamptz, now()) ORDER BY lease_until LIMIT $1`, limit, s.now())
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[int64])
}

// ErrStale is returned when a change's precondition no longer holds: the
// charge moved on (another worker finished it first). Nothing was written.
var ErrStale = errors.New("store: charge changed meanwhile")

// FinishPlacing records the outcome of a placing charge's current bill and
// its result events in one statement (so one transaction). It returns
// ErrStale when the charge is no longer placing that bill, or the lease has
// passed from r.Owner to another worker: then the result is someone else's
// to record (they may know better: a worker that stalled past its lease
// and gave up must not overwrite the bill its successor placed), and msgs
// must not be published. An expired lease nobody took over still counts as
// held.
func (s *Store) FinishPlacing(ctx context.Context, r payflow.PlaceResult, msgs []outbox.Message) error {
	args := s.finishArgs(ctx, r, msgs)
	if s.finishes == nil {
		_, err := s.finishOne(ctx, args)
		return err
	}
	_, err := s.finishes.do(ctx, args)
	return err
}

// finishArgs are FinishPlacing's statement arguments, its time and the
// caller's trace context included.
func (s *Store) finishArgs(ctx context.Context, r payflow.PlaceResult, msgs []outbox.Message) []any {
	args := append([]any{r.ChargePK, r.BillID, string(r.ChargeState), string(r.BillStatus),
		r.PGTxID, r.FailureReason, r.Attempts, r.RepayPK}, outbox.Args(msgs)...)
	args = append(args, r.Owner, mutation.On("no-fence"), s.now())
	args = append(args, outbox.TraceArgs(ctx, msgs)...)
	// A final bill (declined) is settled now: it leaves reconciliation's
	// index. Any other keeps settled_at NULL, so the update stays HOT.
	return append(args, r.BillStatus.Final())
}

const finishPlacingSQL = `
WITH c AS (
	UPDATE charges SET state = $3, failure_reason = nullif($6, ''), attempts = $7,
	       lease_owner = NULL, lease_until = NULL, updated_at = coalesce($15::timestamptz, now())
	WHERE id = $1 AND state = 'placing' AND current_bill_id = $2 AND (lease_owner = $13 OR $14)
	RETURNING id
), b AS (
	UPDATE bills SET status = $4, pg_tx_id = nullif($5, ''), updated_at = coalesce($15::timestamptz, now()),
	       settled_at = CASE WHEN $18::boolean THEN coalesce($15::timestamptz, now()) ELSE settled_at END
	WHERE bill_id = $2 AND status = 'pending' AND EXISTS (SELECT 1 FROM c)
), rp AS (
	UPDATE repays SET step = CASE WHEN $3 = 'requested' THEN 'done' ELSE 'failed' END,
	       new_bill_id = $2, failure_reason = nullif($6, ''), updated_at = coalesce($15::timestamptz, now())
	WHERE id = $8 AND step = 'placing' AND EXISTS (SELECT 1 FROM c)
), o AS (
	INSERT INTO outbox (event_id, topic, key, value, traceparent, tracestate)
	SELECT e.* FROM unnest($9::uuid[], $10::text[], $11::bytea[], $12::bytea[], $16::text[], $17::text[]) e, c
	ON CONFLICT (event_id) DO NOTHING
)
SELECT count(*) FROM c`

// finishOne sends one FinishPlacing statement alone.
func (s *Store) finishOne(ctx context.Context, args []any) (struct{}, error) {
	var n int
	err := s.Pool.QueryRow(ctx, finishPlacingSQL, args...).Scan(&n)
	return struct{}{}, finishedFrom(n, err)
}

func finishedFrom(n int, err error) error {
	if err != nil {
		return fmt.Errorf("store: finish placing: %w", err)
	}
	if n == 0 {
		return ErrStale
	}
	return nil
}

// finishMany sends several FinishPlacing statements in one round trip and
// one transaction; each is fenced on its own, so a stale one records
// nothing (and publishes nothing) while the others commit.
func (s *Store) finishMany(ctx context.Context, items [][]any, out []outcome[struct{}]) error {
	b := &pgx.Batch{}
	for _, args := range items {
		b.Queue(finishPlacingSQL, args...)
	}
	br := s.Pool.SendBatch(ctx, b)
	for i := range items {
		var n int
		if err := br.QueryRow().Scan(&n); err != nil {
			br.Close()
			return fmt.Errorf("store: finish placing: %w", err)
		}
		out[i].err = finishedFrom(n, nil)
	}
	if err := br.Close(); err != nil {
		return fmt.Errorf("store: finish placing: %w", err)
	}
	return nil
}

// Decline records that the PG refused the auto-pay bill and makes next the
// charge's current bill, renewing the caller's lease for its placement, in
// one statement (so one transaction). ErrStale unless owner still holds the
// charge, placing the declined bill: then nothing is written. The method's
// new status is stored too, so later charges do not try an expired card
// again.
func (s *Store) Decline(ctx context.Context, pk int64, declined payflow.Bill, code payflow.DeclineCode, methodStatus payflow.MethodStatus, next payflow.Bill, owner string, lease time.Duration) error {
	var n int
	err := s.Pool.QueryRow(ctx, declineSQL, pk, declined.BillID, next.BillID, lease, owner, mutation.On("no-fence"), s.now(),
		string(code), declined.MethodID, string(methodStatus), string(next.Method), string(next.FallbackReason), next.Amount, next.RepayPK).Scan(&n)
	if err != nil {
		return fmt.Errorf("store: decline: %w", err)
	}
	if n == 0 {
		return ErrStale
	}
	return nil
}

// declineSQL writes nothing unless its first part, the fenced switch of
// the charge to the next bill, updated the charge. A method that is not
// active after the decline stays the default: the next charge then reports
// method_expired rather than a misleading no_method.
const declineSQL = `
WITH c AS (
	UPDATE charges SET current_bill_id = $3, lease_until = coalesce($7::timestamptz, now()) + $4::interval, updated_at = coalesce($7::timestamptz, now())
	WHERE id = $1 AND state = 'placing' AND current_bill_id = $2 AND (lease_owner = $5 OR $6)
	RETURNING id
), d AS (
	UPDATE bills SET status = 'declined', decline_code = $8, updated_at = coalesce($7::timestamptz, now()),
	       settled_at = coalesce($7::timestamptz, now())
	WHERE bill_id = $2 AND status = 'pending' AND EXISTS (SELECT 1 FROM c)
), m AS (
	UPDATE payment_methods SET status = $10, updated_at = coalesce($7::timestamptz, now())
	WHERE id = nullif($9::text, '')::uuid AND $10::text <> 'active' AND status = 'active' AND EXISTS (SELECT 1 FROM c)
), b AS (
	INSERT INTO bills (bill_id, charge_pk, method, fallback_reason, amount, status, repay_pk, created_at, updated_at)
	SELECT $3, c.id, $11, nullif($12::text, ''), $13, 'pending', nullif($14::bigint, 0), coalesce($7::timestamptz, now()), coalesce($7::timestamptz, now()) FROM c
)
SELECT count(*) FROM c`
