package pgclient

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

// HTTPClient is the adapter for PGs that speak payflow's reference HTTP
// protocol, which the simulator in pgsim serves. Every operation is a JSON
// POST; an API key, when configured, is sent as "Authorization: Bearer <key>".
//
//	POST /v1/payments/auto-pay  AutoPayRequest            → 200 Accepted
//	POST /v1/bills/kakao        KakaoBillRequest          → 200 Accepted
//	POST /v1/bills/url          {"bill_id"}               → 200 BillURL
//	POST /v1/payments/lookup    {"bill_id"}               → 200 Payment
//	POST /v1/refunds            RefundRequest             → 200 Refunded
//	POST /v1/bills/destroy      {"bill_id"}               → 200 {}
//
// Errors are {"error":{"code","kind","message"}} where kind is one of the
// Kind values. The status decides when the PG may not have been able to
// say what happened: 429 means it did not act, and so does a 503 whose body
// is the PG's own {"error":{"kind":"transient","code":"unavailable"}}
// (overloaded, nothing executed). Every other 5xx, a bare 503 included,
// leaves the outcome unknown: a proxy or gateway in front of the PG may
// answer it after forwarding the request. Retry-After is honoured on 429
// and 503. 4xx answers carry their kind: 402 declined (code = decline
// code), 400 invalid, 404 not_found, 409 duplicate or conflict.
type HTTPClient struct {
	base    string
	apiKey  string
	timeout time.Duration
	hc      *http.Client
	// traced: the transport reports connections through httptrace, so a
	// failure with no connection is known to have sent nothing.
	traced bool
}

// DefaultTimeout bounds one PG call, including reading its answer.
const DefaultTimeout = 10 * time.Second

// CodeUnavailable is the error code of the PG's own 503 answer that says it
// executed nothing. Only a 503 carrying it (with kind transient) is
// transient; a bare 503 may come from a proxy after the PG acted.
const CodeUnavailable = "unavailable"

// HTTPOption configures an HTTPClient.
type HTTPOption func(*HTTPClient)

// WithTimeout bounds each call (default DefaultTimeout). A call that runs
// out of time has an unknown outcome.
func WithTimeout(d time.Duration) HTTPOption { return func(c *HTTPClient) { c.timeout = d } }

// WithAPIKey sends the key as a bearer token.
func WithAPIKey(key string) HTTPOption { return func(c *HTTPClient) { c.apiKey = key } }

// WithHTTPClient replaces the tuned client, e.g. to add TLS settings or
// instrumentation. Its redirect policy is the caller's: the default client
// follows none, because a redirected POST may change method.
func WithHTTPClient(hc *http.Client) HTTPOption { return func(c *HTTPClient) { c.hc = hc } }

// NewHTTPClient returns an adapter for the PG at baseURL (scheme, host and
// an optional path prefix).
func NewHTTPClient(baseURL string, opts ...HTTPOption) *HTTPClient {
	c := &HTTPClient{base: strings.TrimSuffix(baseURL, "/"), timeout: DefaultTimeout, hc: &http.Client{
		Transport: NewTransport(),
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}}
	for _, o := range opts {
		o(c)
	}
	switch c.hc.Transport.(type) {
	case nil, *http.Transport:
		c.traced = true
	}
	return c
}

// NewTransport returns the transport the adapter uses by default. payflow
// keeps hundreds of PG calls in flight; with the standard two idle
// connections per host most of them would re-dial, and a PG under load
// answers slower still when flooded with handshakes.
func NewTransport() *http.Transport {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns = 1024
	tr.MaxIdleConnsPerHost = 256
	tr.IdleConnTimeout = 90 * time.Second
	// A connect that does not finish in this time sent nothing; failing it
	// early leaves the per-call budget for a retry.
	tr.DialContext = (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	tr.TLSHandshakeTimeout = 5 * time.Second
	return tr
}

func (c *HTTPClient) AutoPay(ctx context.Context, req AutoPayRequest) (Accepted, error) {
	var out Accepted
	err := c.post(ctx, "auto_pay", "/v1/payments/auto-pay", req, &out)
	return out, redact(err, req.BillingKey)
}

func (c *HTTPClient) SendKakaoBill(ctx context.Context, req KakaoBillRequest) (Accepted, error) {
	var out Accepted
	err := c.post(ctx, "kakao_bill", "/v1/bills/kakao", req, &out)
	return out, redact(err, req.Phone)
}

type billIDBody struct {
	BillID string `json:"bill_id"`
}

func (c *HTTPClient) BillURL(ctx context.Context, billID string) (BillURL, error) {
	var out BillURL
	return out, c.post(ctx, "bill_url", "/v1/bills/url", billIDBody{billID}, &out)
}

func (c *HTTPClient) LookupPayment(ctx context.Context, billID string) (Payment, error) {
	var out Payment
	return out, c.post(ctx, "lookup", "/v1/payments/lookup", billIDBody{billID}, &out)
}

func (c *HTTPClient) Refund(ctx context.Context, req RefundRequest) (Refunded, error) {
	var out Refunded
	return out, c.post(ctx, "refund", "/v1/refunds", req, &out)
}

func (c *HTTPClient) DestroyBill(ctx context.Context, billID string) error {
	return c.post(ctx, "destroy", "/v1/bills/destroy", billIDBody{billID}, nil)
}

// maxAnswer bounds what is read of an answer; PG answers are small, and a
// misbehaving PG must not exhaust payflow's memory.
const maxAnswer = 1 << 20

func (c *HTTPClient) post(ctx context.Context, op, path string, in, out any) error {
	body, err := json.Marshal(in)
	if err != nil {
		return &Error{Op: op, Kind: KindInvalid, Message: "encode request: " + err.Error()}
	}
	if c.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.timeout)
		defer cancel()
	}
	// Whether a connection was ever obtained is what separates "the PG
	// cannot have seen the request" from "it may have acted": errors alone
	// do not say it reliably (a deadline can expire while dialling or while
	// waiting for the answer, with the same error).
	var connected atomic.Bool
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{GotConn: func(httptrace.GotConnInfo) { connected.Store(true) }})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+path, bytes.NewReader(body))
	if err != nil {
		return &Error{Op: op, Kind: KindInvalid, Message: "build request: " + redactURL(err)}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	if c.apiKey != "" {
		req.Header.Set("Authorization", "Bearer "+c.apiKey)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return &Error{Op: op, Kind: transportKind(err, c.traced && !connected.Load()), Message: redactURL(err)}
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		// The PG answered and the answer was lost: it may have acted.
		return &Error{Op: op, Kind: KindUnknown, Message: "read answer: " + redactURL(err)}
	}
	if resp.StatusCode/100 == 2 {
		if out == nil {
			return nil
		}
		if err := json.Unmarshal(raw, out); err != nil {
			// A success we cannot read is still a success we must not
			// repeat blindly.
			return &Error{Op: op, Kind: KindUnknown, Message: fmt.Sprintf("undecodable %d answer", resp.StatusCode)}
		}
		return nil
	}
	return statusError(op, resp, raw)
}

// statusError classifies an error answer. A 5xx overrides the body: a
// gateway or proxy in front of the PG may answer 502, 503 or 504 after the
// PG acted, whatever the body claims. The one exception is a 503 that is
// the PG's own "unavailable" answer, which the protocol defines as "nothing
// was executed".
func statusError(op string, resp *http.Response, raw []byte) error {
	var body struct {
		Error struct {
			Kind    Kind   `json:"kind"`
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	_ = json.Unmarshal(raw, &body)
	e := &Error{Op: op, Code: clip(body.Error.Code, 64), Message: clip(body.Error.Message, 256)}
	if e.Message == "" {
		e.Message = resp.Status
	}
	if code := resp.StatusCode; code == http.StatusServiceUnavailable || code == http.StatusTooManyRequests {
		e.RetryAfter = retryAfter(resp.Header.Get("Retry-After"), time.Now())
	}
	switch code := resp.StatusCode; {
	case code == http.StatusTooManyRequests || code == http.StatusRequestTimeout:
		e.Kind = KindTransient
	case code == http.StatusServiceUnavailable && body.Error.Kind == KindTransient && body.Error.Code == CodeUnavailable:
		e.Kind = KindTransient
	case code >= 500:
		e.Kind = KindUnknown
	case code >= 400 && validKind(body.Error.Kind):
		e.Kind = body.Error.Kind
	case code == http.StatusNotFound:
		e.Kind = KindNotFound
	case code == http.StatusConflict:
		e.Kind = KindConflict
	case code == http.StatusPaymentRequired:
		e.Kind = KindDeclined
	default:
		// 400, 401, 403, 422, and 3xx from a misconfigured URL: the request
		// as sent will never work.
		e.Kind = KindInvalid
	}
	return e
}

func validKind(k Kind) bool {
	switch k {
	case KindTransient, KindUnknown, KindDeclined, KindInvalid, KindNotFound, KindDuplicate, KindConflict:
		return true
	}
	return false
}

// retryAfter reads delay-seconds or an HTTP date; anything else is no hint.
func retryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(v); err == nil {
		if s < 0 {
			return 0
		}
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// transportKind decides whether a failed request may have reached the PG.
// Only failures before a connection existed (refused, DNS, a dial timeout)
// are transient; a timeout or a reset once connected may come after the PG
// acted.
func transportKind(err error, neverConnected bool) Kind {
	if neverConnected {
		return KindTransient
	}
	var dnsErr *net.DNSError
	var opErr *net.OpError
	switch {
	case errors.Is(err, syscall.ECONNREFUSED), errors.As(err, &dnsErr):
		return KindTransient
	case errors.As(err, &opErr) && opErr.Op == "dial":
		return KindTransient
	}
	return KindUnknown
}

// redactURL keeps the error's cause but not the URL, which may carry a real
// PG's credentials.
func redactURL(err error) string {
	var ue interface{ Unwrap() error }
	if errors.As(err, &ue) {
		if inner := ue.Unwrap(); inner != nil {
			return inner.Error()
		}
	}
	return err.Error()
}

// redact removes a secret the request carried (a billing key, a phone
// number) from an error, in case the PG echoed it back: errors end up in
// logs and events.
func redact(err error, secret string) error {
	var e *Error
	if secret == "" || !errors.As(err, &e) {
		return err
	}
	e.Message = strings.ReplaceAll(e.Message, secret, "[redacted]")
	e.Code = strings.ReplaceAll(e.Code, secret, "[redacted]")
	return err
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "") + "…"
}
