package pgsim

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/google/uuid"
	"github.com/payflow/payflow/pgclient"
	"github.com/payflow/payflow/stdwebhook"
)

// payPage is the simulated customer paying a KakaoTalk bill: a person (or
// curl) following a bill URL in dev.
func (s *Sim) payPage(w http.ResponseWriter, r *http.Request) {
	err := s.Settle(r.PathValue("bill_id"), pgclient.StatusPaid)
	if err != nil {
		s.answerSettle(w, err)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write([]byte("paid\n"))
}

// schedule settles a bill later unless something settled it first. Timers
// rather than sleeping goroutines, because a benchmark keeps tens of
// thousands of bills waiting. Callers hold mu.
func (s *Sim) schedule(b *bill, d time.Duration, status pgclient.PaymentStatus) {
	if s.closed {
		return
	}
	b.timers = append(b.timers, time.AfterFunc(d, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if !s.closed && b.Status == pgclient.StatusRequested {
			s.finalize(b, status)
		}
	}))
}

func (b *bill) stopTimers() {
	for _, t := range b.timers {
		t.Stop()
	}
	b.timers = nil
}

// finalize moves a bill to its final status and notifies. Callers hold mu.
func (s *Sim) finalize(b *bill, status pgclient.PaymentStatus) {
	b.Status = status
	b.stopTimers()
	s.record(Entry{Op: OpSettle, BillID: b.BillID, Amount: b.Amount, Outcome: string(status)})
	s.log.Debug("pgsim: bill settled", "bill_id", b.BillID, "status", status)
	s.notify(b.Payment)
}

// notify sends the bill's webhook in the background. Retries of one
// notification keep its webhook id, which is the receiver's idempotency key;
// each attempt is signed afresh with its own timestamp, so a long retry
// series is not refused as stale. Callers hold mu.
func (s *Sim) notify(p pgclient.Payment) {
	if s.cfg.CallbackURL == "" || s.closed {
		return
	}
	id := "msg_" + uuid.NewString()
	if s.cfg.WebhookDropRate > 0 && s.rng.Float64() < s.cfg.WebhookDropRate {
		s.record(Entry{Op: OpWebhook, BillID: p.BillID, Amount: p.Amount, Outcome: "dropped", WebhookID: id})
		s.log.Info("pgsim: webhook dropped on purpose", "bill_id", p.BillID, "status", p.Status)
		return
	}
	body, _ := json.Marshal(Notification{BillID: p.BillID, Status: string(p.Status), Amount: p.Amount, PGTxID: p.PGTxID, OccurredAt: time.Now().UTC()})
	if s.cfg.Protocol == ProtocolPaySSam {
		// PaySSam calls back only for successful payments, unsigned.
		if p.Status != pgclient.StatusPaid {
			return
		}
		body = s.payssamCallback(p)
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		attempts, err := s.deliver(id, body)
		outcome := "delivered"
		if err != nil {
			outcome = "undelivered"
			if s.ctx.Err() == nil {
				s.log.Warn("pgsim: webhook not delivered; giving up", "bill_id", p.BillID, "webhook_id", id, "attempts", attempts, "err", err)
			}
		}
		s.mu.Lock()
		s.record(Entry{Op: OpWebhook, BillID: p.BillID, Amount: p.Amount, Outcome: outcome, WebhookID: id, Attempts: attempts})
		s.mu.Unlock()
	}()
}

// deliver posts one notification until a 2xx, retrying with exponential
// backoff within WebhookMaxElapsed.
func (s *Sim) deliver(id string, body []byte) (int, error) {
	b := backoff.NewExponentialBackOff()
	b.InitialInterval = 100 * time.Millisecond
	b.MaxInterval = 5 * time.Second
	b.MaxElapsedTime = s.cfg.WebhookMaxElapsed
	attempts := 0
	err := backoff.Retry(func() error {
		attempts++
		req, err := http.NewRequestWithContext(s.ctx, http.MethodPost, s.cfg.CallbackURL, bytes.NewReader(body))
		if err != nil {
			return backoff.Permanent(err)
		}
		if s.cfg.Protocol == ProtocolPaySSam {
			req.Header = http.Header{}
		} else {
			req.Header = stdwebhook.Headers(s.secret, id, time.Now(), body)
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("User-Agent", "payflow-pgsim")
		resp, err := s.client.Do(req)
		if err != nil {
			return err
		}
		// Drained, the connection is reused for the next notification.
		answer, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			return fmt.Errorf("callback answered %d", resp.StatusCode)
		}
		if s.cfg.Protocol == ProtocolPaySSam && !payssamCallbackAnswered(answer) {
			return errors.New("callback answer is not PaySSam's required body")
		}
		return nil
	}, backoff.WithContext(b, s.ctx))
	return attempts, err
}

func newTxID() string { return "pgtx_" + uuid.NewString() }
