package pgsim

import (
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"net/http"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/payflow/payflow/pgclient"
	"github.com/payflow/payflow/pgclient/payssam"
)

// Protocols the handler can speak (Config.Protocol).
const (
	ProtocolSim     = "sim"
	ProtocolPaySSam = "payssam"
)

// ErrNotInProtocol: the PaySSam protocol has no such state (failed and
// expired bills are unknown to its F/W/C/D states).
var ErrNotInProtocol = errors.New("pgsim: PaySSam has no such bill state")

// The PaySSam protocol (Config.Protocol "payssam"), on the same bills and
// ledger as the reference protocol. It serves, as JSON POSTs with the
// credentials in the body (apiKey, member, merchant, and the data under
// "bill"; the shapes of pgclient/payssam's wire.go):
//
//	POST /bill          create a bill (sendType TALK or URL) → data{billId, shortUrl, …}
//	POST /bill/read     one bill → data{billId, apprState F|W|C|D, apprPrice, price, …}
//	POST /bill/cancel   cancel a paid bill, in full only → data{billId, apprNum, …}
//	POST /bill/destroy  void an unpaid bill → data{apiKey, billId}
//	POST /bill/rp       charge a stored method, approved at once (assumed schema)
//
// Every answer is HTTP 200 {code, message, data}: "0000" on success, else a
// code: VALIDATION_002 for a wrong hash, VALIDATION_001 for another invalid
// field (the family is documented, this member is the simulator's),
// PARTNER_002/003/004 for a missing or wrong apiKey, member or store, 9800
// for a bill id used before (the code the guide gives), BILL_003 for an
// unknown bill (or one of another store), 9971/9970 for a destroy or cancel
// of a paid or cancelled bill, BILL_006 for another state that does not fit
// (a cancel of an unpaid bill: PaySSam's code for it is not documented). The
// injected faults keep their HTTP statuses (503, 504, 500).
//
// A bill's states: W while unpaid, F once paid, C once cancelled (refunded
// in full), D once destroyed. Settle takes paid and cancelled (voided) only:
// failed and expired are no PaySSam state, and BillTTL does not apply.
// Magic billing keys do not decline: what a refused stored method looks
// like at PaySSam is not known. Callbacks (when CallbackURL is set) follow
// PaySSam's approval sync: paid bills only, unsigned, camelCase, and the
// receiver must answer {"code":"0000","msg":"성공하였습니다."}.
func (s *Sim) payssamRoutes(mux *http.ServeMux) {
	route := func(path, op string, h handler) {
		mux.HandleFunc("POST "+path, s.opWith(op, h, payssamOK, payssamFail))
	}
	route(payssam.PathBill, OpKakaoBill, s.psBill)
	route(payssam.PathRead, OpLookup, s.psRead)
	route(payssam.PathCancel, OpRefund, s.psCancel)
	route(payssam.PathDestroy, OpDestroy, s.psDestroy)
	route(payssam.PathRP, OpAutoPay, s.psRP)
}

const psSuccess = "성공하였습니다."

func payssamOK(w http.ResponseWriter, _ int, v any) {
	data, _ := json.Marshal(v)
	writeJSON(w, http.StatusOK, payssam.Response{Code: payssam.CodeOK, Message: psSuccess, Data: data})
}

// payssamFail answers PaySSam's errors with HTTP 200 and their code; the
// simulator's faults keep their status.
func payssamFail(w http.ResponseWriter, e *apiError) {
	if e.status == http.StatusOK {
		writeJSON(w, http.StatusOK, payssam.Response{Code: payssam.Code(e.code), Message: e.msg})
		return
	}
	writeJSON(w, e.status, payssam.Response{Code: "ERROR", Message: e.msg})
}

func psErr(code, format string, a ...any) *apiError {
	return &apiError{http.StatusOK, pgclient.KindInvalid, code, fmt.Sprintf(format, a...)}
}

// psCode turns a core refusal into PaySSam's answer.
func psCode(e *apiError) *apiError {
	if e == nil {
		return nil
	}
	switch e.kind {
	case pgclient.KindDuplicate:
		return psErr(payssam.CodeDuplicateBillV1, "이미 사용된 청구서 번호입니다.")
	case pgclient.KindNotFound:
		return psErr(payssam.CodeBillNotFound, "청구서를 찾을 수 없습니다.")
	case pgclient.KindConflict:
		return psErr("BILL_006", "%s", e.msg)
	}
	return psErr("VALIDATION_001", "%s", e.msg)
}

// psAuth checks the envelope's credentials.
func (s *Sim) psAuth(apiKey, member, store string) *apiError {
	switch {
	case apiKey == "":
		return psErr("PARTNER_002", "apiKey가 없거나 형식이 올바르지 않습니다.")
	case s.cfg.APIKey != "" && apiKey != s.cfg.APIKey:
		return psErr("PARTNER_003", "apiKey에 해당하는 파트너 정보가 없습니다.")
	case member == "" || (s.cfg.PaySSamMember != "" && member != s.cfg.PaySSamMember):
		return psErr("PARTNER_003", "파트너 사용자 정보가 없습니다.")
	case store == "" || (len(s.cfg.PaySSamStores) > 0 && !slices.Contains(s.cfg.PaySSamStores, store)):
		return psErr("PARTNER_004", "하위 사업장 매핑 정보가 없습니다.")
	}
	return nil
}

// psRequest decodes a request's envelope and authenticates its partner:
// the prelude every PaySSam operation shares.
func psRequest[T any](s *Sim, body []byte) (payssam.Envelope[T], *apiError) {
	var env payssam.Envelope[T]
	if err := json.Unmarshal(body, &env); err != nil {
		return env, psErr("VALIDATION_001", "요청 형식이 올바르지 않습니다.")
	}
	return env, s.psAuth(env.APIKey, env.Member, env.Merchant)
}

func validPSBillID(id string) bool {
	if id == "" || len(id) > payssam.BillIDLen {
		return false
	}
	for _, r := range id {
		if !(r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
			return false
		}
	}
	return true
}

// psPrice reads a price: 1–10 digits, above zero.
func psPrice(p string) (int64, bool) {
	if p == "" || len(p) > 10 {
		return 0, false
	}
	for _, r := range p {
		if r < '0' || r > '9' {
			return 0, false
		}
	}
	v, err := strconv.ParseInt(p, 10, 64)
	return v, err == nil && v > 0
}

func validPSPhone(p string) bool {
	if len(p) < 10 || len(p) > 11 || p[:2] != "01" {
		return false
	}
	for _, r := range p {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

func (s *Sim) psInvalid(op, billID string, e *apiError) *apiError {
	return s.invalidRecorded(Entry{Op: op, BillID: billID}, e)
}

func (s *Sim) psBill(r *http.Request, body []byte) (any, *apiError) {
	env, aerr := psRequest[payssam.BillRequest](s, body)
	if aerr != nil {
		return nil, aerr
	}
	b := env.Bill
	price, okPrice := psPrice(b.Price)
	_, errDate := time.Parse(time.DateOnly, b.ExpireDt)
	switch {
	case !validPSBillID(b.BillID):
		return nil, s.psInvalid(OpKakaoBill, b.BillID, psErr("VALIDATION_001", "billId는 영문, 숫자 1~20자입니다."))
	case b.SendType != payssam.SendTalk && b.SendType != payssam.SendURL:
		return nil, s.psInvalid(OpKakaoBill, b.BillID, psErr("VALIDATION_001", "sendType은 TALK 또는 URL입니다."))
	case b.ProductName == "" || b.MemberName == "" || b.CallbackURL == "":
		return nil, s.psInvalid(OpKakaoBill, b.BillID, psErr("VALIDATION_001", "필수 항목이 없습니다."))
	case !okPrice:
		return nil, s.psInvalid(OpKakaoBill, b.BillID, psErr("VALIDATION_001", "price는 숫자 10자리 이내입니다."))
	case !validPSPhone(b.Phone):
		return nil, s.psInvalid(OpKakaoBill, b.BillID, psErr("VALIDATION_001", "휴대폰 번호 형식이 올바르지 않습니다."))
	case b.ExpireDt != "" && errDate != nil:
		return nil, s.psInvalid(OpKakaoBill, b.BillID, psErr("VALIDATION_001", "expireDt는 YYYY-MM-DD입니다."))
	case b.Hash != b.WantHash():
		return nil, s.psInvalid(OpKakaoBill, b.BillID, psErr(payssam.CodeHashMismatch, "해싱값을 확인하시기 바랍니다."))
	}
	if _, aerr := s.placeKakao(pgclient.KakaoBillRequest{BillID: b.BillID, Phone: b.Phone, Name: b.MemberName, Amount: price, OrderName: b.ProductName}, env.Merchant); aerr != nil {
		return nil, psCode(aerr)
	}
	return payssam.BillCreated{APIKey: env.APIKey, Member: env.Member, Merchant: env.Merchant, BillID: b.BillID, Hash: b.Hash,
		ShortURL: s.publicBase(r) + "/pay/" + b.BillID}, nil
}

// psBillAt is the bill of a store, under mu.
func (s *Sim) psBillAt(store, billID string) (*bill, bool) {
	b, ok := s.bills[billID]
	if !ok || b.store != store {
		return nil, false
	}
	return b, true
}

// psState is a bill's apprState.
func psState(b *bill) string {
	switch b.Status {
	case pgclient.StatusPaid:
		if b.Refunded > 0 {
			return payssam.StateCancelled
		}
		return payssam.StatePaid
	case pgclient.StatusCancelled, pgclient.StatusExpired:
		return payssam.StateDestroyed
	}
	return payssam.StateUnpaid
}

// psApprNum is a bill's (simulated) approval number.
func psApprNum(b *bill, salt string) string {
	return fmt.Sprintf("%08d", crc32.ChecksumIEEE([]byte(salt+b.PGTxID))%100_000_000)
}

func (s *Sim) psRead(_ *http.Request, body []byte) (any, *apiError) {
	env, aerr := psRequest[payssam.BillRef](s, body)
	if aerr != nil {
		return nil, aerr
	}
	id := env.Bill.BillID
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.psBillAt(env.Merchant, id)
	if !ok {
		s.record(Entry{Op: OpLookup, BillID: id, Outcome: "not_found"})
		return nil, psCode(notFound("bill"))
	}
	s.record(Entry{Op: OpLookup, BillID: id, Outcome: string(b.Status)})
	out := payssam.BillRead{BillID: id, ApprState: psState(b), Price: payssam.Number(payssam.Price(b.Amount))}
	if out.ApprState == payssam.StatePaid || out.ApprState == payssam.StateCancelled {
		out.ApprPrice = payssam.Number(payssam.Price(b.Amount))
		out.ApprNum = psApprNum(b, "")
		out.ApprPayType = "CARD_VAN"
		if b.Method == OpAutoPay {
			out.ApprPayType = payssam.PayTypeRP
		}
	}
	return out, nil
}

func (s *Sim) psCancel(_ *http.Request, body []byte) (any, *apiError) {
	env, aerr := psRequest[payssam.CancelRequest](s, body)
	if aerr != nil {
		return nil, aerr
	}
	c := env.Bill
	price, okPrice := psPrice(c.Price)
	switch {
	case !validPSBillID(c.BillID) || !okPrice:
		return nil, s.psInvalid(OpRefund, c.BillID, psErr("VALIDATION_001", "billId, price를 확인하세요."))
	case c.CancelReason == "" || utf8.RuneCountInString(c.CancelReason) > payssam.MaxCancelReason:
		return nil, s.psInvalid(OpRefund, c.BillID, psErr("VALIDATION_001", "cancelReason은 20자 이내입니다."))
	case c.Hash != c.WantHash():
		return nil, s.psInvalid(OpRefund, c.BillID, psErr(payssam.CodeHashMismatch, "해싱값을 확인하시기 바랍니다."))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	entry := Entry{Op: OpRefund, BillID: c.BillID, Amount: price}
	b, ok := s.psBillAt(env.Merchant, c.BillID)
	reject := func(outcome string, e *apiError) (any, *apiError) {
		entry.Outcome = outcome
		s.record(entry)
		return nil, e
	}
	switch {
	case !ok:
		return reject("not_found", psCode(notFound("bill")))
	case psState(b) == payssam.StateCancelled:
		return reject("conflict", psErr(payssam.CodeAlreadyCancelledV1, "이미 취소된 청구서입니다."))
	case psState(b) != payssam.StatePaid:
		return reject("conflict", psErr("BILL_006", "결제완료 상태의 청구서만 취소할 수 있습니다."))
	case price != b.Amount:
		// No partial cancel: the price must be what was paid.
		return reject("invalid", psErr("VALIDATION_001", "취소 금액이 결제 금액과 다릅니다."))
	}
	if _, aerr := s.refundLocked(pgclient.RefundRequest{BillID: c.BillID, RefundID: "cancel-" + c.BillID, Amount: price, Reason: c.CancelReason}); aerr != nil {
		return nil, psCode(aerr)
	}
	return payssam.BillCancelled{BillID: c.BillID, Hash: c.Hash, ApprNum: psApprNum(b, "cancel"), ApprOriginNum: psApprNum(b, ""),
		ApprCancelDt: time.Now().In(kst).Format("20060102150405")}, nil
}

var kst = time.FixedZone("KST", 9*60*60)

func (s *Sim) psDestroy(_ *http.Request, body []byte) (any, *apiError) {
	env, aerr := psRequest[payssam.DestroyRequest](s, body)
	if aerr != nil {
		return nil, aerr
	}
	d := env.Bill
	price, okPrice := psPrice(d.Price)
	switch {
	case !validPSBillID(d.BillID) || !okPrice:
		return nil, s.psInvalid(OpDestroy, d.BillID, psErr("VALIDATION_001", "billId, price를 확인하세요."))
	case d.Hash != d.WantHash():
		return nil, s.psInvalid(OpDestroy, d.BillID, psErr(payssam.CodeHashMismatch, "해싱값을 확인하시기 바랍니다."))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.psBillAt(env.Merchant, d.BillID)
	reject := func(outcome string, e *apiError) (any, *apiError) {
		s.record(Entry{Op: OpDestroy, BillID: d.BillID, Outcome: outcome})
		return nil, e
	}
	switch {
	case !ok:
		return reject("not_found", psCode(notFound("bill")))
	case psState(b) == payssam.StatePaid:
		return reject("conflict", psErr(payssam.CodeAlreadyPaidV1, "이미 결제된 청구서입니다."))
	case psState(b) == payssam.StateCancelled:
		return reject("conflict", psErr(payssam.CodeAlreadyCancelledV1, "이미 취소된 청구서입니다."))
	case psState(b) == payssam.StateDestroyed:
		return reject("conflict", psErr("BILL_006", "이미 파기된 청구서입니다."))
	case price != b.Amount:
		return reject("invalid", psErr("VALIDATION_001", "청구 금액이 다릅니다."))
	}
	if aerr := s.destroyLocked(d.BillID); aerr != nil {
		return nil, psCode(aerr)
	}
	return struct {
		APIKey string `json:"apiKey"`
		BillID string `json:"billId"`
	}{env.APIKey, d.BillID}, nil
}

// psRP charges a stored method. The request's shape is pgclient/payssam's
// assumption (RPBill): the simulator mirrors it, it does not confirm it.
func (s *Sim) psRP(_ *http.Request, body []byte) (any, *apiError) {
	env, aerr := psRequest[payssam.RPBill](s, body)
	if aerr != nil {
		return nil, aerr
	}
	b := env.Bill
	price, okPrice := psPrice(b.Price)
	switch {
	case !validPSBillID(b.BillID) || !okPrice || b.ProductName == "" || b.PayMethodID == "" || b.CallbackURL == "":
		return nil, s.psInvalid(OpAutoPay, b.BillID, psErr("VALIDATION_001", "필수 항목을 확인하세요."))
	case b.Hash != b.WantHash():
		return nil, s.psInvalid(OpAutoPay, b.BillID, psErr(payssam.CodeHashMismatch, "해싱값을 확인하시기 바랍니다."))
	}
	acc, aerr := s.placeAutoPay(pgclient.AutoPayRequest{BillID: b.BillID, BillingKey: b.PayMethodID, Amount: price, OrderName: b.ProductName}, env.Merchant, false, true)
	if aerr != nil {
		return nil, psCode(aerr)
	}
	return payssam.RPResult{BillID: acc.BillID, ApprState: payssam.StatePaid, ApprNum: fmt.Sprintf("%08d", crc32.ChecksumIEEE([]byte(acc.PGTxID))%100_000_000)}, nil
}

// payssamCallback is PaySSam's approval sync of a paid bill. Callers hold
// mu.
func (s *Sim) payssamCallback(p pgclient.Payment) []byte {
	b := s.bills[p.BillID]
	payType := "CARD_VAN"
	if p.Method == OpAutoPay {
		payType = payssam.PayTypeRP
	}
	body, _ := json.Marshal(struct {
		APIKey      string `json:"apiKey,omitempty"`
		BillID      string `json:"billId"`
		ApprState   string `json:"apprState"`
		ApprPrice   string `json:"apprPrice"`
		ApprNum     string `json:"apprNum"`
		ApprDt      string `json:"apprDt"`
		ApprPayType string `json:"apprPayType"`
	}{s.cfg.APIKey, p.BillID, payssam.StatePaid, payssam.Price(p.Amount), psApprNum(b, ""), time.Now().In(kst).Format("20060102150405"), payType})
	return body
}

// payssamCallbackAnswered: the receiver answered exactly what PaySSam
// requires.
func payssamCallbackAnswered(answer []byte) bool {
	var a struct {
		Code string `json:"code"`
		Msg  string `json:"msg"`
	}
	return json.Unmarshal(answer, &a) == nil && a.Code == payssam.CodeOK && a.Msg == psSuccess
}
