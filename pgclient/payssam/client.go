// Package payssam is the pgclient.Client adapter for 결제선생 (PaySSam,
// Paymint) partner API v2: KakaoTalk bills (POST /bill), payment lookup
// (/bill/read), full cancel of a paid bill (/bill/cancel), void of an unpaid
// one (/bill/destroy) and the charge of a stored method (/bill/rp, whose
// schema is assumed: see RPBill). docs/pg/payssam.md maps the API onto
// payflow and lists every assumption; wire.go holds the shapes.
//
// Its ids: PaySSam bill ids are chosen by the caller, 1–20 letters and
// digits. The adapter uses BillID(payflow bill id) on every call, so the
// same payflow bill id names the same PaySSam bill everywhere; the answers
// speak of the payflow bill id again.
//
// What it cannot do: partial refunds (Capabilities; such a refund is refused
// with pgclient.CodeNotSupported before anything is sent), and telling a
// bill's link again after creation (BillURL answers from what was stored:
// see Config.StoredURL).
package payssam

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/payflow/payflow/pgclient"
)

// MaxAmount is the largest amount the adapter sends: payflow's own limit
// (PaySSam takes up to 10 digits).
const MaxAmount = 100_000_000

// DefaultBillValidity is how long a KakaoTalk bill stays payable when
// Config.BillValidity is zero.
const DefaultBillValidity = 7 * 24 * time.Hour

// Fallbacks for fields PaySSam requires and a payflow request may leave
// empty.
const (
	defaultMemberName  = "고객"
	defaultProductName = "결제 요청"
	defaultCancel      = "환불"
)

// kst is Korea Standard Time (UTC+9, no daylight saving): expireDt is a KST
// date.
var kst = time.FixedZone("KST", 9*60*60)

// Config configures the adapter. URL, APIKey, Member, Merchants and
// CallbackURL are required.
type Config struct {
	// URL is the partner API root, e.g. https://sandbox.paymint.co.kr/partner
	// (no default: PaySSam gives the production one after 검수).
	URL string
	// APIKey is the partner's key (≤32); Member the partner user code (≤60).
	APIKey string
	Member string
	// Merchants maps payflow merchant ids to PaySSam store codes (≤60)
	// (see ParseMerchants).
	Merchants map[string]string
	// CallbackURL receives PaySSam's approval callbacks; it goes with every
	// bill and must be exactly right.
	CallbackURL string
	// BillValidity is how long a KakaoTalk bill stays payable; default
	// DefaultBillValidity. It becomes expireDt, a KST date: the bill is
	// payable until the end of that day.
	BillValidity time.Duration
	// Timeout bounds one call (default pgclient.DefaultTimeout).
	Timeout time.Duration
	// HTTPClient replaces the default client (pgclient.NewTransport, no
	// redirects followed).
	HTTPClient *http.Client
	// MerchantOf, when set, names the payflow merchant of a bill, for the
	// calls that name only a bill (lookup, bill URL, refund, destroy) and
	// whose bill this process did not create. Without it the adapter
	// tries each configured store with /bill/read (read-only) until one
	// knows the bill.
	MerchantOf func(ctx context.Context, billID string) (merchantID string, err error)
	// StoredURL, when set, answers BillURL for bills this process did not
	// create (another process, or before a restart): payflow's record of
	// pgclient.Accepted.URL. An empty URL means none was stored.
	StoredURL func(ctx context.Context, billID string) (pgclient.BillURL, error)
	// Now is the clock (tests); time.Now by default.
	Now func() time.Time
}

// ParseMerchants reads "merchant_id:payssam_store_code,..." (the
// PAYFLOW_PAYSSAM_MERCHANTS form).
func ParseMerchants(s string) (map[string]string, error) {
	m := map[string]string{}
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		id, code, ok := strings.Cut(part, ":")
		id, code = strings.TrimSpace(id), strings.TrimSpace(code)
		if !ok || id == "" || code == "" {
			return nil, fmt.Errorf("payssam: merchants: %q is not merchant_id:store_code", part)
		}
		if _, dup := m[id]; dup {
			return nil, fmt.Errorf("payssam: merchants: %q given twice", id)
		}
		m[id] = code
	}
	if len(m) == 0 {
		return nil, errors.New("payssam: merchants: none given")
	}
	return m, nil
}

// Client is the adapter. Its methods are safe for concurrent use.
type Client struct {
	cfg    Config
	base   string
	hc     *http.Client
	traced bool
	stores []string // the distinct store codes, sorted
	known  *billCache
}

var _ pgclient.Client = (*Client)(nil)
var _ pgclient.Capable = (*Client)(nil)

// New returns the adapter; it fails only on a bad configuration.
func New(cfg Config) (*Client, error) {
	u, err := url.Parse(cfg.URL)
	switch {
	case cfg.URL == "" || err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
		return nil, errors.New("payssam: URL must be an absolute http(s) URL")
	case cfg.APIKey == "" || len(cfg.APIKey) > 32:
		return nil, errors.New("payssam: APIKey is required (at most 32 characters)")
	case cfg.Member == "" || len(cfg.Member) > 60:
		return nil, errors.New("payssam: Member is required (at most 60 characters)")
	case len(cfg.Merchants) == 0:
		return nil, errors.New("payssam: Merchants is required")
	case cfg.CallbackURL == "":
		return nil, errors.New("payssam: CallbackURL is required")
	}
	if cu, err := url.Parse(cfg.CallbackURL); err != nil || !cu.IsAbs() || cu.Host == "" {
		return nil, errors.New("payssam: CallbackURL must be an absolute URL")
	}
	seen := map[string]bool{}
	c := &Client{cfg: cfg, base: strings.TrimSuffix(cfg.URL, "/"), known: newBillCache(100_000)}
	for id, code := range cfg.Merchants {
		if code == "" || len(code) > 60 {
			return nil, fmt.Errorf("payssam: the store code of merchant %q must be 1..60 characters", id)
		}
		if !seen[code] {
			seen[code] = true
			c.stores = append(c.stores, code)
		}
	}
	sort.Strings(c.stores)
	if c.cfg.Timeout <= 0 {
		c.cfg.Timeout = pgclient.DefaultTimeout
	}
	if c.cfg.BillValidity <= 0 {
		c.cfg.BillValidity = DefaultBillValidity
	}
	if c.cfg.Now == nil {
		c.cfg.Now = time.Now
	}
	c.hc = cfg.HTTPClient
	if c.hc == nil {
		c.hc = &http.Client{Transport: pgclient.NewTransport(), CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		}}
	}
	switch c.hc.Transport.(type) {
	case nil, *http.Transport:
		c.traced = true
	}
	return c, nil
}

// Capabilities: PaySSam cancels a payment only in full.
func (c *Client) Capabilities() pgclient.Capabilities {
	return pgclient.Capabilities{PartialRefund: false}
}

// SendKakaoBill creates the bill with sendType TALK. Accepted.URL is the
// bill's link (shortUrl), which PaySSam returns only now: store it.
// Accepted.PGTxID is the PaySSam bill id.
func (c *Client) SendKakaoBill(ctx context.Context, req pgclient.KakaoBillRequest) (pgclient.Accepted, error) {
	const op = "kakao_bill"
	if err := c.live(ctx, op); err != nil {
		return pgclient.Accepted{}, err
	}
	if err := validBill(op, req.BillID, req.Amount); err != nil {
		return pgclient.Accepted{}, err
	}
	phone, ok := NormalizePhone(req.Phone)
	if !ok {
		return pgclient.Accepted{}, invalid(op, "phone must be a Korean mobile number (+8210…, 010…)")
	}
	store, err := c.storeOf(op, req.MerchantID)
	if err != nil {
		return pgclient.Accepted{}, err
	}
	now := c.cfg.Now().In(kst)
	expire := now.Add(c.cfg.BillValidity)
	day := time.Date(expire.Year(), expire.Month(), expire.Day(), 0, 0, 0, 0, kst)
	b := BillRequest{
		BillID:      BillID(req.BillID),
		SendType:    SendTalk,
		ProductName: orDefault(req.OrderName, defaultProductName),
		Price:       Price(req.Amount),
		MemberName:  orDefault(req.Name, defaultMemberName),
		Phone:       phone,
		ExpireDt:    day.Format(time.DateOnly),
		CallbackURL: c.cfg.CallbackURL,
	}
	b.Hash = b.WantHash()
	var out BillCreated
	err = c.post(ctx, op, PathBill, c.envelope(store, b), &out, phone)
	if err != nil {
		return pgclient.Accepted{}, err
	}
	if out.BillID != "" && out.BillID != b.BillID {
		return pgclient.Accepted{}, &pgclient.Error{Op: op, Kind: pgclient.KindUnknown, Message: "the answer is about another bill"}
	}
	link := pgclient.BillURL{URL: out.ShortURL, ExpiresAt: day.AddDate(0, 0, 1)}
	c.known.put(req.BillID, billInfo{store: store, amount: req.Amount, url: link})
	return pgclient.Accepted{BillID: req.BillID, PGTxID: b.BillID, URL: out.ShortURL, URLExpiresAt: link.ExpiresAt}, nil
}

// AutoPay charges a stored method with /bill/rp. ASSUMPTION(rp): see
// RPBill for the request and what its answer means.
func (c *Client) AutoPay(ctx context.Context, req pgclient.AutoPayRequest) (pgclient.Accepted, error) {
	const op = "auto_pay"
	if err := c.live(ctx, op); err != nil {
		return pgclient.Accepted{}, err
	}
	if err := validBill(op, req.BillID, req.Amount); err != nil {
		return pgclient.Accepted{}, err
	}
	if req.BillingKey == "" || len(req.BillingKey) > 256 {
		return pgclient.Accepted{}, invalid(op, "billing key is required (at most 256 bytes)")
	}
	store, err := c.storeOf(op, req.MerchantID)
	if err != nil {
		return pgclient.Accepted{}, err
	}
	b := RPBill{
		BillID:      BillID(req.BillID),
		ProductName: orDefault(req.OrderName, defaultProductName),
		Price:       Price(req.Amount),
		PayMethodID: req.BillingKey,
		CallbackURL: c.cfg.CallbackURL,
	}
	b.Hash = b.WantHash()
	var out RPResult
	if err := c.post(ctx, op, PathRP, c.envelope(store, b), &out, req.BillingKey); err != nil {
		return pgclient.Accepted{}, err
	}
	if out.BillID != "" && out.BillID != b.BillID {
		return pgclient.Accepted{}, &pgclient.Error{Op: op, Kind: pgclient.KindUnknown, Message: "the answer is about another bill"}
	}
	c.known.put(req.BillID, billInfo{store: store, amount: req.Amount})
	return pgclient.Accepted{BillID: req.BillID, PGTxID: b.BillID}, nil
}

// LookupPayment reads the bill (/bill/read) and maps its state:
//
//	W 미결제  → requested
//	F 결제완료 → paid
//	C 취소    → paid, with Refunded = Amount (a paid bill cancelled in full is a
//	           refunded payment, not an unpaid bill that was called off)
//	D 파기    → cancelled (an unpaid bill voided)
//
// PaySSam has no failed or expired state that the digest knows of; any
// other state is an error of kind unknown (CodeUnknownState). PGTxID is the
// PaySSam bill id.
//
// A paid (F) or cancelled (C) bill's amount is what PaySSam approved
// (apprPrice): the amount a settlement is confirmed against. An answer
// without it reports the bill paid with Amount 0, not the bill's own price
// or the amount sent (ASSUMPTION(read-price) falls back to those for W and
// D bills only), which would confirm an amount PaySSam never stated: no
// settlement confirms against 0 (an amount mismatch, left for an
// operator), while a placement's look-up, which needs only to know the
// bill exists, still finds it.
func (c *Client) LookupPayment(ctx context.Context, billID string) (pgclient.Payment, error) {
	const op = "lookup"
	if err := c.live(ctx, op); err != nil {
		return pgclient.Payment{}, err
	}
	_, p, approved, err := c.read(ctx, op, billID)
	if err == nil && p.Status == pgclient.StatusPaid && !approved {
		p.Amount, p.Refunded = 0, 0
	}
	return p, err
}

// BillURL answers the link PaySSam gave when the bill was created, from
// this process's memory or Config.StoredURL, once /bill/read confirms the
// bill is still unpaid. PaySSam offers no call that returns it again.
func (c *Client) BillURL(ctx context.Context, billID string) (pgclient.BillURL, error) {
	const op = "bill_url"
	if err := c.live(ctx, op); err != nil {
		return pgclient.BillURL{}, err
	}
	_, p, _, err := c.read(ctx, op, billID)
	if err != nil {
		return pgclient.BillURL{}, err
	}
	if p.Status != pgclient.StatusRequested {
		return pgclient.BillURL{}, &pgclient.Error{Op: op, Kind: pgclient.KindConflict, Code: "not_payable", Message: "the bill is " + string(p.Status) + " and has no pay URL"}
	}
	if info, ok := c.known.get(billID); ok && info.url.URL != "" {
		return info.url, nil
	}
	if c.cfg.StoredURL != nil {
		u, err := c.cfg.StoredURL(ctx, billID)
		if err != nil {
			return pgclient.BillURL{}, &pgclient.Error{Op: op, Kind: pgclient.KindTransient, Message: "stored URL: " + err.Error()}
		}
		if u.URL != "" {
			return u, nil
		}
	}
	return pgclient.BillURL{}, &pgclient.Error{Op: op, Kind: pgclient.KindInvalid, Code: CodeURLNotStored,
		Message: "PaySSam returns a bill's link only when the bill is created, and it was not stored"}
}

// Refund cancels a paid bill in full (/bill/cancel). PaySSam documents no
// partial cancel, so a refund of another amount than the paid one is
// refused with pgclient.CodeNotSupported: at once when req.PaidAmount says
// so, else after reading the bill, and never with a cancel sent. PaySSam
// keeps no refund id: a bill already cancelled in full answers a refund of
// its whole amount as done (the first answer again), which is what a
// repeated refund id needs; payflow's own bookkeeping keeps a second refund
// of a refunded bill from being asked at all.
func (c *Client) Refund(ctx context.Context, req pgclient.RefundRequest) (pgclient.Refunded, error) {
	const op = "refund"
	if err := c.live(ctx, op); err != nil {
		return pgclient.Refunded{}, err
	}
	switch {
	case req.BillID == "" || req.RefundID == "":
		return pgclient.Refunded{}, invalid(op, "bill id and refund id are required")
	case req.Amount <= 0 || req.Amount > MaxAmount:
		return pgclient.Refunded{}, invalid(op, fmt.Sprintf("amount must be within 1..%d", MaxAmount))
	case req.PaidAmount > 0 && req.Amount < req.PaidAmount:
		return pgclient.Refunded{}, notSupported(op, req.Amount, req.PaidAmount)
	}
	store, p, paid, err := c.read(ctx, op, req.BillID)
	if err != nil {
		return pgclient.Refunded{}, err
	}
	done := pgclient.Refunded{RefundID: req.RefundID, Amount: req.Amount, RefundedTotal: req.Amount, PGTxID: p.PGTxID}
	switch {
	case p.Status != pgclient.StatusPaid:
		return pgclient.Refunded{}, &pgclient.Error{Op: op, Kind: pgclient.KindConflict, Code: "not_paid", Message: "only a paid bill can be refunded; the bill is " + string(p.Status)}
	case !paid:
		return pgclient.Refunded{}, &pgclient.Error{Op: op, Kind: pgclient.KindUnknown, Message: "PaySSam did not say what was paid"}
	case p.Refunded == p.Amount && req.Amount == p.Amount:
		return done, nil // cancelled in full already: the first answer again
	case p.Refunded > 0 || req.Amount > p.Amount:
		return pgclient.Refunded{}, &pgclient.Error{Op: op, Kind: pgclient.KindConflict, Code: "exceeds_paid",
			Message: fmt.Sprintf("refunds would total %d of %d paid", p.Refunded+req.Amount, p.Amount)}
	case req.Amount < p.Amount:
		return pgclient.Refunded{}, notSupported(op, req.Amount, p.Amount)
	}
	b := CancelRequest{BillID: BillID(req.BillID), Price: Price(p.Amount), CancelReason: cancelReason(req.Reason)}
	b.Hash = b.WantHash()
	var out BillCancelled
	err = c.post(ctx, op, PathCancel, c.envelope(store, b), &out, "")
	if err == nil {
		return done, nil
	}
	if pgclient.KindOf(err) == pgclient.KindConflict {
		// Cancelled meanwhile (a racing copy, or an answer lost before):
		// the same answer, if the bill now reads cancelled in full.
		if _, again, _, rerr := c.read(ctx, op, req.BillID); rerr == nil && again.Status == pgclient.StatusPaid && again.Refunded == again.Amount && again.Amount == req.Amount {
			return done, nil
		}
	}
	return pgclient.Refunded{}, err
}

// DestroyBill voids an unpaid (W) bill with /bill/destroy. A bill already
// voided (D) is done (destroying twice is how a caller recovers from a lost
// answer); a paid or cancelled one is a conflict, and nothing is sent.
func (c *Client) DestroyBill(ctx context.Context, billID string) error {
	const op = "destroy"
	if err := c.live(ctx, op); err != nil {
		return err
	}
	store, p, _, err := c.read(ctx, op, billID)
	if err != nil {
		return err
	}
	switch p.Status {
	case pgclient.StatusCancelled:
		return nil
	case pgclient.StatusRequested:
	default:
		return &pgclient.Error{Op: op, Kind: pgclient.KindConflict, Code: "not_destroyable", Message: "only an unpaid bill can be destroyed; the bill is " + string(p.Status)}
	}
	if p.Amount <= 0 {
		return &pgclient.Error{Op: op, Kind: pgclient.KindUnknown, Message: "the bill's price is unknown, and the destroy hash needs it"}
	}
	b := DestroyRequest{BillID: BillID(billID), Price: Price(p.Amount)}
	b.Hash = b.WantHash()
	err = c.post(ctx, op, PathDestroy, c.envelope(store, b), nil, "")
	if pgclient.KindOf(err) == pgclient.KindConflict {
		if _, again, _, rerr := c.read(ctx, op, billID); rerr == nil && again.Status == pgclient.StatusCancelled {
			return nil // voided by a racing copy
		}
	}
	return err
}

// read reads a bill with /bill/read at its store and maps it. paid says
// whether the amount came from apprPrice (what was paid).
func (c *Client) read(ctx context.Context, op, billID string) (store string, p pgclient.Payment, paid bool, err error) {
	if billID == "" {
		return "", p, false, invalid(op, "bill id is required")
	}
	stores, err := c.storesOf(ctx, op, billID)
	if err != nil {
		return "", p, false, err
	}
	pid := BillID(billID)
	var data BillRead
	for i, s := range stores {
		err = c.post(ctx, op, PathRead, c.envelope(s, BillRef{BillID: pid}), &data, "")
		if pgclient.KindOf(err) == pgclient.KindNotFound && i < len(stores)-1 {
			continue // another store may hold it
		}
		store = s
		break
	}
	if err != nil {
		return "", p, false, err
	}
	if data.BillID != "" && data.BillID != pid {
		return "", p, false, &pgclient.Error{Op: op, Kind: pgclient.KindUnknown, Message: "the answer is about another bill"}
	}
	info, _ := c.known.get(billID)
	if info.store == "" {
		c.known.put(billID, billInfo{store: store})
	}
	p = pgclient.Payment{BillID: billID, Method: "kakao_bill", PGTxID: pid}
	if data.ApprPayType == PayTypeRP {
		p.Method = "auto_pay"
	}
	// ASSUMPTION(read-price): see BillRead.Price.
	amount, paid := data.ApprPrice.Int64()
	if !paid {
		if amount, paid = data.Price.Int64(); !paid {
			amount = info.amount
		}
		paid = false
	}
	p.Amount = amount
	switch data.ApprState {
	case StateUnpaid:
		p.Status = pgclient.StatusRequested
	case StatePaid:
		p.Status = pgclient.StatusPaid
	case StateCancelled:
		p.Status, p.Refunded = pgclient.StatusPaid, amount
	case StateDestroyed:
		p.Status = pgclient.StatusCancelled
	default:
		return "", pgclient.Payment{}, false, &pgclient.Error{Op: op, Kind: pgclient.KindUnknown, Code: CodeUnknownState,
			Message: fmt.Sprintf("bill state %q is none of F, W, C, D", clip(data.ApprState, 16))}
	}
	return store, p, paid, nil
}

// storeOf is the PaySSam store code of a payflow merchant.
func (c *Client) storeOf(op, merchantID string) (string, error) {
	if s, ok := c.cfg.Merchants[merchantID]; ok {
		return s, nil
	}
	return "", &pgclient.Error{Op: op, Kind: pgclient.KindInvalid, Code: CodeUnknownMerchant, Message: fmt.Sprintf("merchant %q has no PaySSam store code", clip(merchantID, 64))}
}

// storesOf are the stores to ask about a bill: the one it was created at if
// known, else the configured ones, in order.
func (c *Client) storesOf(ctx context.Context, op, billID string) ([]string, error) {
	if info, ok := c.known.get(billID); ok && info.store != "" {
		return []string{info.store}, nil
	}
	if c.cfg.MerchantOf != nil {
		m, err := c.cfg.MerchantOf(ctx, billID)
		if err != nil {
			return nil, &pgclient.Error{Op: op, Kind: pgclient.KindTransient, Message: "merchant of the bill: " + err.Error()}
		}
		s, err := c.storeOf(op, m)
		if err != nil {
			return nil, err
		}
		return []string{s}, nil
	}
	return c.stores, nil
}

func (c *Client) envelope(store string, bill any) Envelope[any] {
	return Envelope[any]{APIKey: c.cfg.APIKey, Member: c.cfg.Member, Merchant: store, Bill: bill}
}

// live refuses work for a caller that already gave up: nothing is sent, so
// the error is transient.
func (c *Client) live(ctx context.Context, op string) error {
	if err := ctx.Err(); err != nil {
		return &pgclient.Error{Op: op, Kind: pgclient.KindTransient, Message: err.Error()}
	}
	return nil
}

// maxAnswer bounds what is read of an answer.
const maxAnswer = 1 << 20

// post sends one request and classifies the answer. Errors come back with
// HTTP 200 and a code: the code decides, not the status. What cannot be
// read as an answer (no JSON, no code, cut off), a timeout or a reset once
// connected, and any 5xx are KindUnknown: PaySSam may have acted. secret
// (a phone, a billing key) is removed from error texts, and so is the API
// key, in case PaySSam echoes them.
func (c *Client) post(ctx context.Context, op, path string, in, out any, secret string) error {
	err := c.do(ctx, op, path, in, out)
	var e *pgclient.Error
	if errors.As(err, &e) {
		for _, s := range []string{secret, c.cfg.APIKey} {
			if s != "" {
				e.Message = strings.ReplaceAll(e.Message, s, "[redacted]")
				e.Code = strings.ReplaceAll(e.Code, s, "[redacted]")
			}
		}
	}
	return err
}

func (c *Client) do(ctx context.Context, op, path string, in, out any) error {
	body, err := json.Marshal(in)
	if err != nil {
		return invalid(op, "encode request: "+err.Error())
	}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	var connected atomic.Bool
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{GotConn: func(httptrace.GotConnInfo) { connected.Store(true) }})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+path, bytes.NewReader(body))
	if err != nil {
		return invalid(op, "build request: "+unwrapped(err))
	}
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	req.Header.Set("Accept", "application/json")
	resp, err := c.hc.Do(req)
	if err != nil {
		return &pgclient.Error{Op: op, Kind: pgclient.TransportErrorKind(err, c.traced && !connected.Load()), Message: unwrapped(err)}
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return &pgclient.Error{Op: op, Kind: pgclient.KindUnknown, Message: "read answer: " + unwrapped(err)}
	}
	var r Response
	decoded := json.Unmarshal(raw, &r) == nil && r.Code != ""
	e := &pgclient.Error{Op: op, Code: clip(string(r.Code), 64), Message: clip(r.Text(), 256)}
	if e.Message == "" {
		e.Message = resp.Status
	}
	switch status := resp.StatusCode; {
	case status >= 500:
		// Whatever the body says: a proxy may answer after forwarding.
		e.Kind = pgclient.KindUnknown
		return e
	case status == http.StatusTooManyRequests || status == http.StatusRequestTimeout:
		e.Kind = pgclient.KindTransient
		return e
	case status/100 != 2 && !decoded:
		// A 3xx or 4xx that is not PaySSam's answer: a wrong URL or a
		// proxy refusing; the request as sent will not work.
		e.Kind = pgclient.KindInvalid
		return e
	case !decoded:
		// A success status whose body is not an answer: PaySSam may have
		// acted.
		e.Kind, e.Message = pgclient.KindUnknown, fmt.Sprintf("unreadable %d answer", resp.StatusCode)
		return e
	case r.Code != CodeOK:
		e.Kind, _ = KindOfCode(string(r.Code))
		return e
	}
	if out == nil {
		return nil
	}
	if len(r.Data) == 0 || string(r.Data) == "null" || json.Unmarshal(r.Data, out) != nil {
		return &pgclient.Error{Op: op, Kind: pgclient.KindUnknown, Code: CodeOK, Message: "a success answer without readable data"}
	}
	return nil
}

func validBill(op, billID string, amount int64) error {
	switch {
	case billID == "" || len(billID) > 128:
		return invalid(op, "bill id is required (at most 128 bytes)")
	case amount <= 0 || amount > MaxAmount:
		return invalid(op, fmt.Sprintf("amount must be within 1..%d", MaxAmount))
	}
	return nil
}

func invalid(op, msg string) error {
	return &pgclient.Error{Op: op, Kind: pgclient.KindInvalid, Code: "invalid_request", Message: msg}
}

func notSupported(op string, amount, paid int64) error {
	return &pgclient.Error{Op: op, Kind: pgclient.KindInvalid, Code: pgclient.CodeNotSupported,
		Message: fmt.Sprintf("PaySSam cancels only in full: a refund of %d of %d paid is not supported", amount, paid)}
}

// NormalizePhone turns an E.164 Korean number (+82 10 …) or a domestic one
// (010-…) into the digits PaySSam takes (01012345678); KakaoTalk bills go to
// Korean mobile numbers only.
func NormalizePhone(phone string) (string, bool) {
	var b strings.Builder
	for i, r := range strings.TrimSpace(phone) {
		switch {
		case r >= '0' && r <= '9':
			b.WriteRune(r)
		case r == '+' && i == 0:
			b.WriteRune(r)
		case r == '-' || r == ' ' || r == '.' || r == '(' || r == ')':
		default:
			return "", false
		}
	}
	d := b.String()
	if rest, ok := strings.CutPrefix(d, "+82"); ok {
		d = "0" + strings.TrimPrefix(rest, "0")
	}
	if len(d) < 10 || len(d) > 11 || !strings.HasPrefix(d, "01") || strings.ContainsRune(d, '+') {
		return "", false
	}
	switch d[2] {
	case '0', '1', '6', '7', '8', '9':
		return d, true
	}
	return "", false
}

// cancelReason fits a reason into what PaySSam takes (MaxCancelReason
// characters).
func cancelReason(s string) string {
	s = strings.TrimSpace(s)
	if s == "" {
		return defaultCancel
	}
	if r := []rune(s); len(r) > MaxCancelReason {
		return string(r[:MaxCancelReason])
	}
	return s
}

func orDefault(s, def string) string {
	if strings.TrimSpace(s) == "" {
		return def
	}
	return s
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "") + "…"
}

// unwrapped keeps an error's cause but not the URL.
func unwrapped(err error) string {
	var ue interface{ Unwrap() error }
	if errors.As(err, &ue) {
		if inner := ue.Unwrap(); inner != nil {
			return inner.Error()
		}
	}
	return err.Error()
}

// billInfo is what the adapter learnt of a bill it created: its store, its
// amount and its link.
type billInfo struct {
	store  string
	amount int64
	url    pgclient.BillURL
}

// billCache keeps billInfo of recent bills in two generations: when the
// current one is full it becomes the old one, so memory stays bounded
// (about 2×size bills) and recent bills stay known.
type billCache struct {
	mu       sync.Mutex
	size     int
	cur, old map[string]billInfo
}

func newBillCache(size int) *billCache {
	return &billCache{size: size, cur: map[string]billInfo{}, old: map[string]billInfo{}}
}

func (b *billCache) get(id string) (billInfo, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if v, ok := b.cur[id]; ok {
		return v, true
	}
	v, ok := b.old[id]
	return v, ok
}

func (b *billCache) put(id string, v billInfo) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.cur) >= b.size {
		b.old, b.cur = b.cur, map[string]billInfo{}
	}
	b.cur[id] = v
}
