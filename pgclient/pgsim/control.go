package pgsim

import (
	"encoding/json"
	"errors"
	"net/http"

	"github.com/payflow/payflow/pgclient"
)

func (s *Sim) serveLedger(w http.ResponseWriter, r *http.Request) {
	bill, op := r.URL.Query().Get("bill_id"), r.URL.Query().Get("op")
	out := []Entry{}
	for _, e := range s.Ledger() {
		if (bill == "" || e.BillID == bill) && (op == "" || e.Op == op) {
			out = append(out, e)
		}
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Sim) serveSettle(w http.ResponseWriter, r *http.Request) {
	var req struct {
		BillID string                 `json:"bill_id"`
		Status pgclient.PaymentStatus `json:"status"`
	}
	body, err := readBody(w, r)
	if err != nil || json.Unmarshal(body, &req) != nil {
		writeError(w, invalidf("body must be {\"bill_id\",\"status\"}"))
		return
	}
	s.answerSettle(w, s.Settle(req.BillID, req.Status))
}

func (s *Sim) answerSettle(w http.ResponseWriter, err error) {
	switch {
	case err == nil:
		writeJSON(w, http.StatusOK, struct{}{})
	case errors.Is(err, ErrNoSuchBill):
		writeError(w, notFound("bill"))
	case errors.Is(err, ErrNotFinal):
		writeError(w, invalidf("%s", err.Error()))
	default:
		writeError(w, conflict("final", err.Error()))
	}
}

func (s *Sim) serveFailNext(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Op   string `json:"op"`
		Mode string `json:"mode"`
		N    int    `json:"n"`
	}
	body, err := readBody(w, r)
	if err != nil || json.Unmarshal(body, &req) != nil {
		writeError(w, invalidf("body must be {\"op\",\"mode\",\"n\"}"))
		return
	}
	mode, err := ParseFaultMode(req.Mode)
	switch {
	case err != nil:
		writeError(w, invalidf("mode must be unavailable, timeout_after_execute or internal_after_execute"))
		return
	case !validOp(req.Op):
		writeError(w, invalidf("op must be one of auto_pay, kakao_bill, bill_url, lookup, refund, destroy"))
		return
	case req.N < 1 || req.N > 10_000:
		writeError(w, invalidf("n must be within 1..10000"))
		return
	}
	s.FailNext(req.Op, mode, req.N)
	writeJSON(w, http.StatusOK, struct{}{})
}

func validOp(op string) bool {
	switch op {
	case OpAutoPay, OpKakaoBill, OpBillURL, OpLookup, OpRefund, OpDestroy:
		return true
	}
	return false
}
