package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"runtime/debug"
	"time"
	"unicode"

	"github.com/google/uuid"

	"github.com/payflow/payflow/internal/strictjson"
)

const (
	readyTimeout = 3 * time.Second
	// pgLookupTimeout bounds the PG lookup inside GET /v1/charges/{id}: the
	// view answers from the database; the PG's word is a bonus that must
	// not hold the answer up.
	pgLookupTimeout  = 2 * time.Second
	pgBillURLTimeout = 5 * time.Second
)

func writeJSON(w http.ResponseWriter, status int, v any) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	// Answers name members' cards and merchants' charges: no cache may
	// keep them.
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

type apiError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, map[string]apiError{"error": {Code: code, Message: msg}})
}

func (s *server) internal(w http.ResponseWriter, r *http.Request, what string, err error) {
	s.Logger.Error("api: "+what, "route", r.Pattern, "err", err)
	writeError(w, http.StatusInternalServerError, "internal", "internal error")
}

// decodeBody reads a JSON object of known fields into v, answering the
// error itself when it cannot. The body decides, not the Content-Type: a
// client that sends JSON with curl's default form type is understood, and
// anything that is not one JSON object is refused with 400 (a bearer-token
// API gains nothing from 415, since cross-site forms cannot carry the token).
// Keys must name v's fields exactly and only once (package strictjson), so
// a body means the same to payflow as to any proxy or validator before it.
func decodeBody(w http.ResponseWriter, r *http.Request, v any) bool {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBody))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			writeError(w, http.StatusRequestEntityTooLarge, "body_too_large", fmt.Sprintf("the body is larger than %d bytes", MaxBody))
			return false
		}
		writeError(w, http.StatusBadRequest, "invalid_request", "the body could not be read")
		return false
	}
	if len(bytes.TrimSpace(body)) == 0 {
		writeError(w, http.StatusBadRequest, "invalid_request", "the body is empty; send a JSON object")
		return false
	}
	if err := strictjson.Decode(body, v, strictjson.RejectUnknownFields()); err != nil {
		writeError(w, http.StatusBadRequest, "invalid_request", jsonProblem(err))
		return false
	}
	return true
}

// jsonProblem says what is wrong with a body without repeating its values:
// a misplaced billing key must not come back in an error message.
func jsonProblem(err error) string {
	var se *strictjson.Error
	switch {
	case !errors.As(err, &se):
		return "the body is not the expected JSON object"
	case errors.Is(err, strictjson.ErrSyntax) && se.Reason == "holds more than one JSON value":
		return "the body must hold exactly one JSON object"
	case se.Field == "" && errors.Is(err, strictjson.ErrType):
		return "the body must be a JSON object"
	case se.Field == "":
		return "the body " + se.Reason
	case errors.Is(err, strictjson.ErrUnknownField):
		return fmt.Sprintf("unknown field %q", se.Field)
	}
	return fmt.Sprintf("field %q %s", se.Field, se.Reason)
}

// maxRequestID bounds a client's X-Request-ID: a UUID, a W3C trace id or a
// vendor's request id all fit.
const maxRequestID = 64

// validRequestID reports whether a client's X-Request-ID may be echoed and
// logged as sent: 1 to 64 characters of [A-Za-z0-9._:-], nothing that means
// something in HTML, a header, a URL or a log line.
func validRequestID(v string) bool {
	if v == "" || len(v) > maxRequestID {
		return false
	}
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9',
			c == '.', c == '_', c == ':', c == '-':
		default:
			return false
		}
	}
	return true
}

func isSpaceOrControl(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }

// reqInfo is what the handlers tell the access log about a request.
type reqInfo struct {
	merchant string
}

type infoKey struct{}

func info(ctx context.Context) *reqInfo {
	if i, ok := ctx.Value(infoKey{}).(*reqInfo); ok {
		return i
	}
	return &reqInfo{}
}

// recorder remembers the status for the access log.
type recorder struct {
	http.ResponseWriter
	status int
	wrote  bool
}

func (r *recorder) WriteHeader(s int) {
	if !r.wrote {
		r.status, r.wrote = s, true
	}
	r.ResponseWriter.WriteHeader(s)
}

func (r *recorder) Write(b []byte) (int, error) {
	if !r.wrote {
		r.status, r.wrote = http.StatusOK, true
	}
	return r.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection (flushes,
// deadlines) through the recorder.
func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// discard captures what the mux's own 404 and 405 handlers would write, so
// that they can be answered in the API's error shape instead.
type discard struct {
	header http.Header
	status int
}

func (d *discard) Header() http.Header         { return d.header }
func (d *discard) Write(b []byte) (int, error) { return len(b), nil }
func (d *discard) WriteHeader(s int)           { d.status = s }

// serve wraps the mux with what every request gets: a request id, panic
// recovery, JSON 404/405 answers and one access log line. The log names
// the route pattern, never the path (paths carry member ids and charge
// ids) nor any header (they carry tokens).
func (s *server) serve(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rid := r.Header.Get("X-Request-ID")
		if !validRequestID(rid) {
			rid = uuid.NewString()
		}
		w.Header().Set("X-Request-ID", rid)
		ri := &reqInfo{}
		r = r.WithContext(context.WithValue(r.Context(), infoKey{}, ri))
		rec := &recorder{ResponseWriter: w, status: http.StatusOK}
		h, pattern := mux.Handler(r)
		defer func() {
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					panic(p)
				}
				s.Logger.Error("api: panic", "route", pattern, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
				if !rec.wrote {
					writeError(rec, http.StatusInternalServerError, "internal", "internal error")
				}
			}
			attrs := []slog.Attr{slog.String("request_id", rid), slog.String("method", r.Method),
				slog.String("route", pattern), slog.Int("status", rec.status),
				slog.Float64("duration_ms", float64(time.Since(start).Microseconds())/1000)}
			if ri.merchant != "" {
				attrs = append(attrs, slog.String("merchant_id", ri.merchant))
			}
			s.Logger.LogAttrs(r.Context(), slog.LevelInfo, "http", attrs...)
		}()
		if pattern == "" {
			d := &discard{header: http.Header{}, status: http.StatusOK}
			h.ServeHTTP(d, r)
			switch d.status {
			case http.StatusMethodNotAllowed:
				rec.Header().Set("Allow", d.header.Get("Allow"))
				writeError(rec, http.StatusMethodNotAllowed, "method_not_allowed", "method "+r.Method+" is not allowed here")
			case http.StatusNotFound:
				writeError(rec, http.StatusNotFound, "not_found", "no such endpoint")
			default:
				// Redirects to a cleaned path and the like.
				for k, v := range d.header {
					rec.Header()[k] = v
				}
				rec.WriteHeader(d.status)
			}
			return
		}
		// Through the mux again, not h: only the mux sets the path values.
		mux.ServeHTTP(rec, r)
	})
}
