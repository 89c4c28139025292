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
	"strconv"
	"strings"
	"syscall"
	"time"
)

// HTTPClient is the adapter for PGs that speak payflow's reference HTTP
// protocol (the simulator in pgsim does): JSON POSTs to
//
//	/v1/payments/auto-pay   AutoPayRequest   → Accepted
//	/v1/bills/kakao         KakaoBillRequest → Accepted
//	/v1/bills/url           {"bill_id"}      → BillURL
//	/v1/payments/lookup     {"bill_id"}      → Payment
//	/v1/refunds             RefundRequest    → Refunded
//	/v1/bills/destroy       {"bill_id"}      → {}
//
// and errors as {"error":{"kind","code","message"}} with a fitting status.
type HTTPClient struct {
	base   string
	apiKey string
	hc     *http.Client
}

// HTTPOption configures an HTTPClient.
type HTTPOption func(*HTTPClient)

// WithTimeout bounds each call (default 10 s).
func WithTimeout(d time.Duration) HTTPOption { return func(c *HTTPClient) { c.hc.Timeout = d } }

// WithAPIKey sends the key as a bearer token.
func WithAPIKey(key string) HTTPOption { return func(c *HTTPClient) { c.apiKey = key } }

// NewHTTPClient returns an adapter for the PG at baseURL.
func NewHTTPClient(baseURL string, opts ...HTTPOption) *HTTPClient {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	// payflow keeps hundreds of PG calls in flight: keep that many
	// connections warm instead of re-dialling.
	tr.MaxIdleConns = 1024
	tr.MaxIdleConnsPerHost = 512
	c := &HTTPClient{base: strings.TrimSuffix(baseURL, "/"), hc: &http.Client{Transport: tr, Timeout: 10 * time.Second}}
	for _, o := range opts {
		o(c)
	}
	return c
}

func (c *HTTPClient) AutoPay(ctx context.Context, req AutoPayRequest) (Accepted, error) {
	var out Accepted
	return out, c.post(ctx, "auto_pay", "/v1/payments/auto-pay", req, &out)
}

func (c *HTTPClient) SendKakaoBill(ctx context.Context, req KakaoBillRequest) (Accepted, error) {
	var out Accepted
	return out, c.post(ctx, "kakao_bill", "/v1/bills/kakao", req, &out)
}

func (c *HTTPClient) BillURL(ctx context.Context, billID string) (BillURL, error) {
	var out BillURL
	return out, c.post(ctx, "bill_url", "/v1/bills/url", map[string]string{"bill_id": billID}, &out)
}

func (c *HTTPClient) LookupPayment(ctx context.Context, billID string) (Payment, error) {
	var out Payment
	return out, c.post(ctx, "lookup", "/v1/payments/lookup", map[string]string{"bill_id": billID}, &out)
}

func (c *HTTPClient) Refund(ctx context.Context, req RefundRequest) (Refunded, error) {
	var out Refunded
	return out, c.post(ctx, "refund", "/v1/refunds", req, &out)
}

func (c *HTTPClient) DestroyBill(ctx context.Context, billID string) error {
	return c.post(ctx, "destroy", "/v1/bills/destroy", map[string]string{"bill_id": billID}, nil)
}

func (c *HTTPClient) post(ctx context.Context, op, path string, in, out any) error {
	body, err := json.Marshal(in)
	if err != nil {
		return &Error{Op: op, Kind: KindInvalid, Message: "encode request: " + err.Error()}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+path, bytes.NewReader(body))
	if err != nil {
		return &Error{Op: op, Kind: KindInvalid, Message: err.Error()}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	if c.apiKey != "" {
		req.Header.Set("Authorization", "Bearer "+c.apiKey)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return &Error{Op: op, Kind: transportKind(err), Message: redactURL(err)}
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		// The PG answered and the answer was lost: it may have acted.
		return &Error{Op: op, Kind: KindUnknown, Message: "read response: " + err.Error()}
	}
	if resp.StatusCode/100 == 2 {
		if out == nil {
			return nil
		}
		if err := json.Unmarshal(raw, out); err != nil {
			return &Error{Op: op, Kind: KindUnknown, Message: "undecodable success answer"}
		}
		return nil
	}
	return statusError(op, resp, raw)
}

// statusError classifies an error answer. The status decides where the
// body's kind is absent or implausible: 503 and 429 mean the PG did not act;
// other 5xx leave the outcome unknown.
func statusError(op string, resp *http.Response, raw []byte) error {
	var body struct {
		Error struct {
			Kind    Kind   `json:"kind"`
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	_ = json.Unmarshal(raw, &body)
	e := &Error{Op: op, Code: body.Error.Code, Message: body.Error.Message}
	if e.Message == "" {
		e.Message = resp.Status
	}
	switch {
	case resp.StatusCode == http.StatusServiceUnavailable || resp.StatusCode == http.StatusTooManyRequests:
		e.Kind = KindTransient
		if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s >= 0 {
			e.RetryAfter = time.Duration(s) * time.Second
		}
	case resp.StatusCode >= 500:
		e.Kind = KindUnknown
	default:
		switch body.Error.Kind {
		case KindDeclined, KindInvalid, KindNotFound, KindDuplicate, KindConflict:
			e.Kind = body.Error.Kind
		default:
			switch resp.StatusCode {
			case http.StatusNotFound:
				e.Kind = KindNotFound
			case http.StatusConflict:
				e.Kind = KindConflict
			case http.StatusPaymentRequired:
				e.Kind = KindDeclined
			default:
				e.Kind = KindInvalid
			}
		}
	}
	return e
}

// transportKind decides whether a failed request may have reached the PG.
// Only failures before anything was sent (refused connection, DNS) are
// transient; a timeout or a reset may come after the PG acted.
func transportKind(err error) Kind {
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

// redactURL keeps the error's cause but not the URL (it may carry
// credentials of a real PG).
func redactURL(err error) string {
	var ue interface{ Unwrap() error }
	if errors.As(err, &ue) {
		if inner := ue.Unwrap(); inner != nil {
			return fmt.Sprint(inner)
		}
	}
	return err.Error()
}
