package pgsim

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"strconv"
	"time"

	"github.com/payflow/payflow/pgclient"
)

// Handler serves the PG protocol and the simulator's own endpoints.
func (s *Sim) Handler() http.Handler {
	mux := http.NewServeMux()
	if s.cfg.Protocol == ProtocolPaySSam {
		s.payssamRoutes(mux)
	} else {
		mux.HandleFunc("POST /v1/payments/auto-pay", s.op(OpAutoPay, s.autoPay))
		mux.HandleFunc("POST /v1/bills/kakao", s.op(OpKakaoBill, s.kakaoBill))
		mux.HandleFunc("POST /v1/bills/url", s.op(OpBillURL, s.billURL))
		mux.HandleFunc("POST /v1/payments/lookup", s.op(OpLookup, s.lookup))
		mux.HandleFunc("POST /v1/refunds", s.op(OpRefund, s.refund))
		mux.HandleFunc("POST /v1/bills/destroy", s.op(OpDestroy, s.destroy))
	}
	mux.HandleFunc("GET /sim/ledger", s.serveLedger)
	mux.HandleFunc("GET /sim/calls", func(w http.ResponseWriter, _ *http.Request) {
		s.mu.Lock()
		calls := maps.Clone(s.calls)
		s.mu.Unlock()
		writeJSON(w, http.StatusOK, calls)
	})
	mux.HandleFunc("POST /sim/settle", s.serveSettle)
	mux.HandleFunc("POST /sim/fail-next", s.serveFailNext)
	mux.HandleFunc("GET /pay/{bill_id}", s.payPage)
	mux.HandleFunc("POST /pay/{bill_id}", s.payPage)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	return mux
}

// apiError is the simulator's error answer.
type apiError struct {
	status int
	kind   pgclient.Kind
	code   string
	msg    string
}

type handler func(r *http.Request, body []byte) (any, *apiError)

// op wraps an operation with authentication, latency, faults and the common
// error shape.
func (s *Sim) op(name string, h handler) http.HandlerFunc {
	return s.opWith(name, h, writeJSON, writeError)
}

// opWith is op with the protocol's own answers: ok writes a result, fail an
// error (the faults' and the handler's alike).
func (s *Sim) opWith(name string, h handler, ok func(http.ResponseWriter, int, any), fail func(http.ResponseWriter, *apiError)) http.HandlerFunc {
	writeError, writeJSON := fail, ok
	return func(w http.ResponseWriter, r *http.Request) {
		s.count(name)
		if !s.authorized(r) {
			writeError(w, &apiError{http.StatusUnauthorized, pgclient.KindInvalid, "unauthorized", "missing or wrong API key"})
			return
		}
		// Read the body first: only then does the server notice a caller
		// that hangs up, which the latency relies on.
		body, err := readBody(w, r)
		if err != nil {
			writeError(w, &apiError{http.StatusBadRequest, pgclient.KindInvalid, "bad_request", err.Error()})
			return
		}
		var res any
		aerr := s.perform(r.Context(), name, func() (aerr *apiError) {
			res, aerr = h(r, body)
			return aerr
		})
		switch {
		case aerr == errCallerLeft:
			return
		case aerr != nil:
			if unavailable(aerr) {
				w.Header().Set("Retry-After", strconv.Itoa(int(s.retryAfter()/time.Second)))
			}
			writeError(w, aerr)
			return
		}
		writeJSON(w, http.StatusOK, res)
	}
}

func (s *Sim) authorized(r *http.Request) bool {
	if s.cfg.APIKey == "" || s.cfg.Protocol == ProtocolPaySSam {
		// PaySSam carries its key in the body: its handlers check it.
		return true
	}
	got := []byte(r.Header.Get("Authorization"))
	return subtle.ConstantTimeCompare(got, []byte("Bearer "+s.cfg.APIKey)) == 1
}

// nextFault takes a queued fault, else rolls the configured rates.
func (s *Sim) nextFault(op string) FaultMode {
	s.mu.Lock()
	defer s.mu.Unlock()
	if q := s.faults[op]; len(q) > 0 {
		s.faults[op] = q[1:]
		return q[0]
	}
	if s.cfg.ErrorRate > 0 && s.rng.Float64() < s.cfg.ErrorRate {
		return FaultUnavailable
	}
	if s.cfg.TimeoutRate > 0 && s.rng.Float64() < s.cfg.TimeoutRate {
		return FaultTimeoutAfterExecute
	}
	return 0
}

// errCallerLeft: the caller gave up during the latency, before anything was
// executed. Over HTTP it gets no answer.
var errCallerLeft = &apiError{499, pgclient.KindUnknown, "caller_left", "the caller gave up before the operation was executed"}

// perform runs one operation as the PG does, for either client: the
// latency, then the queued or random fault, which may keep exec from running
// or hide its answer.
func (s *Sim) perform(ctx context.Context, op string, exec func() *apiError) *apiError {
	fault := s.nextFault(op)
	if !sleep(ctx, s.cfg.Latency) {
		return errCallerLeft
	}
	if fault == FaultUnavailable {
		s.log.Debug("pgsim: injected 503", "op", op)
		return &apiError{http.StatusServiceUnavailable, pgclient.KindTransient, pgclient.CodeUnavailable, "simulated outage; nothing was executed"}
	}
	aerr := exec()
	switch fault {
	case FaultTimeoutAfterExecute:
		s.log.Debug("pgsim: holding the answer of an executed operation", "op", op)
		sleep(ctx, s.cfg.TimeoutHold)
		return &apiError{http.StatusGatewayTimeout, pgclient.KindUnknown, "timeout", "simulated timeout after execution"}
	case FaultInternalAfterExecute:
		s.log.Debug("pgsim: injected 500 after execution", "op", op)
		return &apiError{http.StatusInternalServerError, pgclient.KindUnknown, "internal", "simulated failure after execution"}
	}
	return aerr
}

// unavailable: the answer is the injected outage, which comes with the
// configured Retry-After.
func unavailable(e *apiError) bool {
	return e.status == http.StatusServiceUnavailable && e.code == pgclient.CodeUnavailable
}

// retryAfter is Config.RetryAfter in whole seconds, rounded up, as the
// Retry-After header carries it.
func (s *Sim) retryAfter() time.Duration {
	return (s.cfg.RetryAfter + time.Second - 1) / time.Second * time.Second
}

// count counts a request of op that arrived (Calls).
func (s *Sim) count(op string) {
	s.mu.Lock()
	s.calls[op]++
	s.mu.Unlock()
}

func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

func readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(http.MaxBytesReader(w, r.Body, 64<<10)); err != nil {
		return nil, errors.New("body too large or unreadable")
	}
	return buf.Bytes(), nil
}

func decode(body []byte, v any) *apiError {
	if err := json.Unmarshal(body, v); err != nil {
		return &apiError{http.StatusBadRequest, pgclient.KindInvalid, "bad_request", "body is not the expected JSON object"}
	}
	return nil
}

func invalidf(format string, a ...any) *apiError {
	return &apiError{http.StatusBadRequest, pgclient.KindInvalid, "invalid_request", fmt.Sprintf(format, a...)}
}

func notFound(what string) *apiError {
	return &apiError{http.StatusNotFound, pgclient.KindNotFound, "not_found", "no such " + what}
}

func conflict(code, msg string) *apiError {
	return &apiError{http.StatusConflict, pgclient.KindConflict, code, msg}
}

func validBill(id string, amount int64) *apiError {
	switch {
	case id == "" || len(id) > 128:
		return invalidf("bill_id is required (at most 128 bytes)")
	case amount <= 0 || amount > MaxAmount:
		return invalidf("amount must be within 1..%d", MaxAmount)
	}
	return nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, e *apiError) {
	writeJSON(w, e.status, map[string]any{"error": map[string]string{"kind": string(e.kind), "code": e.code, "message": e.msg}})
}
