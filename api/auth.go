package api

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"log/slog"
	"net/http"
	"sort"
	"strings"
)

// authenticator checks bearer tokens. It keeps only SHA-256 digests and
// compares digests, so that comparison time depends neither on where a
// guess first differs nor on its length; and it compares a merchant token
// with every merchant's, so that timing says nothing about which merchants
// exist.
type authenticator struct {
	platform    [32]byte
	hasPlatform bool
	merchants   []merchantToken
}

type merchantToken struct {
	id     string
	digest [32]byte
}

func newAuthenticator(platform string, merchants map[string]string, log *slog.Logger) *authenticator {
	a := &authenticator{}
	if platform != "" {
		a.platform, a.hasPlatform = sha256.Sum256([]byte(platform)), true
	} else {
		log.Warn("api: no platform token configured; the payment-method endpoints refuse every call")
	}
	ids := make([]string, 0, len(merchants))
	for id := range merchants {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	seen := map[[32]byte]string{}
	for _, id := range ids {
		tok := merchants[id]
		if tok == "" {
			log.Error("api: merchant has an empty token; it cannot call the API", "merchant_id", id)
			continue
		}
		d := sha256.Sum256([]byte(tok))
		if other, dup := seen[d]; dup {
			// Kept, but a token matching two merchants is refused below.
			log.Error("api: two merchants share a token; it is refused for both", "merchant_id", id, "other_merchant_id", other)
		}
		if a.hasPlatform && d == a.platform {
			log.Error("api: a merchant's token is the platform token; its holder can manage payment methods", "merchant_id", id)
		}
		seen[d] = id
		a.merchants = append(a.merchants, merchantToken{id: id, digest: d})
	}
	return a
}

// bearer returns the token of an "Authorization: Bearer <token>" header.
func bearer(r *http.Request) (string, bool) {
	scheme, tok, ok := strings.Cut(strings.TrimSpace(r.Header.Get("Authorization")), " ")
	tok = strings.TrimSpace(tok)
	if !ok || !strings.EqualFold(scheme, "Bearer") || tok == "" || strings.ContainsFunc(tok, isSpaceOrControl) {
		return "", false
	}
	return tok, true
}

func (a *authenticator) isPlatform(r *http.Request) bool {
	tok, ok := bearer(r)
	if !ok || !a.hasPlatform {
		return false
	}
	d := sha256.Sum256([]byte(tok))
	return subtle.ConstantTimeCompare(d[:], a.platform[:]) == 1
}

// merchantOf returns the merchant the request's token belongs to.
func (a *authenticator) merchantOf(r *http.Request) (string, bool) {
	tok, ok := bearer(r)
	if !ok {
		return "", false
	}
	d := sha256.Sum256([]byte(tok))
	who, matches := "", 0
	for _, m := range a.merchants {
		if subtle.ConstantTimeCompare(d[:], m.digest[:]) == 1 {
			who = m.id
			matches++
		}
	}
	return who, matches == 1
}

func unauthorized(w http.ResponseWriter, msg string) {
	w.Header().Set("WWW-Authenticate", `Bearer realm="payflow"`)
	writeError(w, http.StatusUnauthorized, "unauthorized", msg)
}

func (s *server) platform(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !s.auth.isPlatform(r) {
			unauthorized(w, "a valid platform token is required")
			return
		}
		h(w, r)
	}
}

type merchantKey struct{}

func (s *server) merchant(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		who, ok := s.auth.merchantOf(r)
		if !ok {
			unauthorized(w, "a valid merchant token is required")
			return
		}
		info(r.Context()).merchant = who
		h(w, r.WithContext(context.WithValue(r.Context(), merchantKey{}, who)))
	}
}

// merchantID is the merchant the caller authenticated as.
func merchantID(r *http.Request) string { return r.Context().Value(merchantKey{}).(string) }
