package worker

import (
	"context"
	"errors"
	"time"

	"github.com/cenkalti/backoff/v4"

	"github.com/payflow/payflow/pgclient"
)

// pgBackOff is the retry schedule of one PG operation: exponential with
// jitter, bounded by the retry budget, and never sooner than the PG asked
// (Retry-After on a 429 or 503): retrying earlier only adds load to a PG
// that said it is overloaded.
type pgBackOff struct {
	backoff.BackOff
	now    func() time.Time
	jitter func() float64
	after  time.Duration // the PG's Retry-After from the last failure
	stop   time.Time     // the budget's end
}

func (w *Worker) newPGBackOff() *pgBackOff {
	b := backoff.NewExponentialBackOff()
	b.InitialInterval = w.cfg.RetryInitial
	b.MaxInterval = 2 * time.Second
	b.MaxElapsedTime = w.cfg.RetryBudget
	b.Clock = clockFunc(w.cfg.Now)
	// The jitter is applied here, from the worker's source, so a seeded
	// run waits the same every time.
	b.RandomizationFactor = 0
	b.Reset() // start the budget on the worker's clock
	return &pgBackOff{BackOff: b, now: w.cfg.Now, jitter: w.cfg.Jitter, stop: w.cfg.Now().Add(w.cfg.RetryBudget)}
}

// jitterFactor spreads each wait over ±50% of the interval, as backoff's
// default randomization does, so workers that failed together do not all
// retry at once.
const jitterFactor = 0.5

// retry runs op with b's schedule, waiting on the worker's timer.
func (w *Worker) retry(ctx context.Context, op backoff.Operation, b backoff.BackOff, notify backoff.Notify) error {
	var t backoff.Timer
	if w.cfg.Timer != nil {
		t = w.cfg.Timer()
	}
	return backoff.RetryNotifyWithTimer(op, backoff.WithContext(b, ctx), notify, t)
}

type clockFunc func() time.Time

func (f clockFunc) Now() time.Time { return f() }

// saw records the PG's answer to an attempt.
func (p *pgBackOff) saw(err error) {
	p.after = 0
	var e *pgclient.Error
	if errors.As(err, &e) {
		p.after = e.RetryAfter
	}
}

func (p *pgBackOff) NextBackOff() time.Duration {
	next := p.BackOff.NextBackOff()
	if next != backoff.Stop {
		next = time.Duration(float64(next) * (1 - jitterFactor + 2*jitterFactor*p.jitter()))
		if p.now().Add(next).After(p.stop) {
			return backoff.Stop
		}
	}
	if next == backoff.Stop || p.after <= next {
		return next
	}
	if p.now().Add(p.after).After(p.stop) {
		return backoff.Stop // the PG asks us to wait past the budget
	}
	return p.after
}
