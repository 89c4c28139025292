package api

import (
	"errors"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/payflow/payflow/payflow"
)

const (
	maxBillingKey = 256
	maxLabel      = 64 // runes
)

// methodJSON is a payment method as shown: never the billing key, sealed
// or not.
type methodJSON struct {
	ID        string    `json:"id"`
	Label     string    `json:"label"`
	Default   bool      `json:"default"`
	Status    string    `json:"status"`
	CreatedAt time.Time `json:"created_at"`
}

func toMethodJSON(m payflow.PaymentMethod) methodJSON {
	return methodJSON{ID: m.ID, Label: m.Label, Default: m.Default, Status: string(m.Status), CreatedAt: m.CreatedAt.UTC()}
}

// MaskedLabel is the label users see: the label they gave and the last four
// characters of the billing key, e.g. "Shinhan ****1234". A key shorter
// than eight characters shows none of them, so the label never reveals
// more than half of a key.
func MaskedLabel(label, billingKey string) string {
	label = strings.TrimSpace(label)
	if label == "" {
		label = "Card"
	}
	tail := ""
	if r := []rune(billingKey); len(r) >= 8 {
		tail = string(r[len(r)-4:])
	}
	return label + " ****" + tail
}

func (s *server) member(w http.ResponseWriter, r *http.Request) (string, bool) {
	id := r.PathValue("member_id")
	if err := payflow.ValidID(id); err != nil {
		writeError(w, http.StatusBadRequest, "invalid_request", "member_id "+err.Error())
		return "", false
	}
	return id, true
}

func (s *server) addMethod(w http.ResponseWriter, r *http.Request) {
	member, ok := s.member(w, r)
	if !ok {
		return
	}
	var body struct {
		BillingKey string `json:"billing_key"`
		Label      string `json:"label"`
		Default    bool   `json:"default"`
	}
	if !decodeBody(w, r, &body) {
		return
	}
	switch {
	case body.BillingKey == "":
		writeError(w, http.StatusBadRequest, "invalid_request", "billing_key is required")
		return
	case len(body.BillingKey) > maxBillingKey || !utf8.ValidString(body.BillingKey) ||
		strings.ContainsFunc(body.BillingKey, isSpaceOrControl):
		writeError(w, http.StatusBadRequest, "invalid_request", "billing_key must be at most 256 bytes without spaces or control characters")
		return
	case utf8.RuneCountInString(body.Label) > maxLabel || !utf8.ValidString(body.Label) ||
		strings.ContainsFunc(body.Label, isControl):
		writeError(w, http.StatusBadRequest, "invalid_request", "label must be at most 64 characters without control characters")
		return
	}
	if s.Vault == nil {
		s.internal(w, r, "add method", errors.New("no vault configured"))
		return
	}
	// The id is chosen here because the sealed key is bound to it: a
	// sealed key copied onto another row does not open.
	id := uuid.NewString()
	sealed, err := s.Vault.Seal([]byte(body.BillingKey), []byte(id))
	if err != nil {
		s.internal(w, r, "seal billing key", err)
		return
	}
	m, err := s.Store.AddMethod(r.Context(), payflow.PaymentMethod{ID: id, MemberID: member,
		Label: MaskedLabel(body.Label, body.BillingKey), Default: body.Default, BillingKeyEnc: sealed})
	if err != nil {
		s.internal(w, r, "add method", err)
		return
	}
	writeJSON(w, http.StatusCreated, toMethodJSON(m))
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) }

func (s *server) listMethods(w http.ResponseWriter, r *http.Request) {
	member, ok := s.member(w, r)
	if !ok {
		return
	}
	ms, err := s.Store.ListMethods(r.Context(), member)
	if err != nil {
		s.internal(w, r, "list methods", err)
		return
	}
	out := make([]methodJSON, 0, len(ms))
	for _, m := range ms {
		out = append(out, toMethodJSON(m))
	}
	writeJSON(w, http.StatusOK, map[string]any{"payment_methods": out})
}

func (s *server) deleteMethod(w http.ResponseWriter, r *http.Request) {
	member, ok := s.member(w, r)
	if !ok {
		return
	}
	err := s.Store.DeleteMethod(r.Context(), member, r.PathValue("id"))
	switch {
	case errors.Is(err, payflow.ErrNotFound):
		writeError(w, http.StatusNotFound, "not_found", "no such payment method")
	case err != nil:
		s.internal(w, r, "delete method", err)
	default:
		w.WriteHeader(http.StatusNoContent)
	}
}
