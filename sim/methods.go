package sim

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/google/uuid"

	"github.com/payflow/payflow/payflow"
)

// methodBook is the members' stored payment methods, as the worker sees
// them: a card can be deleted (and registered again) between charges.
type methodBook struct {
	mu      sync.Mutex
	deleted map[string]bool
	// everDeleted are the members whose card was deleted at some point.
	everDeleted map[string]bool
	// blip, when set, says whether this read of a billing key meets a
	// transient error (a database blip, a pool timeout).
	blip func() bool
}

func newMethodBook() *methodBook {
	return &methodBook{deleted: map[string]bool{}, everDeleted: map[string]bool{}}
}

// errBlip is a key source's transient failure.
var errBlip = errors.New("sim: key source: pool acquire timeout")

func methodID(member string) string {
	return uuid.NewSHA1(uuid.NameSpaceOID, []byte("sim-method-"+member)).String()
}

func keyOf(member string) string {
	for _, m := range members {
		if m.id == member {
			return m.key
		}
	}
	return ""
}

// toggle deletes a member's card, or registers it again; it reports
// whether the card is now deleted.
func (b *methodBook) toggle(member string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.deleted[member] = !b.deleted[member]
	if b.deleted[member] {
		b.everDeleted[member] = true
	}
	return b.deleted[member]
}

func (b *methodBook) Default(_ context.Context, member string) (*payflow.StoredMethod, string, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	key := keyOf(member)
	if key == "" || b.deleted[member] {
		return nil, "", nil
	}
	return &payflow.StoredMethod{ID: methodID(member), Status: payflow.MethodActive}, key, nil
}

func (b *methodBook) BillingKey(_ context.Context, id string) (string, error) {
	if b.blip != nil && b.blip() {
		return "", errBlip
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, m := range members {
		if m.key != "" && methodID(m.id) == id {
			if b.deleted[m.id] {
				return "", fmt.Errorf("%w: deleted", payflow.ErrMethodUnusable)
			}
			return m.key, nil
		}
	}
	return "", fmt.Errorf("%w: no such method", payflow.ErrMethodUnusable)
}
