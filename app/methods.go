package app

import (
	"context"
	"errors"
	"fmt"

	"github.com/payflow/payflow/payflow"
	"github.com/payflow/payflow/store"
	"github.com/payflow/payflow/vault"
)

// methodSource gives the worker members' methods, opening billing keys with
// the vault only at the moment of the PG call.
type methodSource struct {
	st    *store.Store
	vault *vault.Vault
}

func (m *methodSource) Default(ctx context.Context, memberID string) (*payflow.StoredMethod, string, error) {
	sm, err := m.st.DefaultMethod(ctx, memberID)
	if err != nil || sm == nil {
		return nil, "", err
	}
	if sm.Status != payflow.MethodActive {
		return &payflow.StoredMethod{ID: sm.ID, Status: sm.Status}, "", nil
	}
	key, err := m.vault.Open(sm.BillingKeyEnc, []byte(sm.ID))
	if err != nil {
		// A key that does not open (ErrOpen), or one sealed with a key not
		// rolled out here yet (ErrUnknownKey), makes the method unusable
		// for this charge, not the charge: it goes out as a KakaoTalk
		// bill. The method is not marked: only a PG decline or a resumed
		// charge's ErrOpen does that (see BillingKey).
		return &payflow.StoredMethod{ID: sm.ID, Status: payflow.MethodInvalid}, "", nil
	}
	return &payflow.StoredMethod{ID: sm.ID, Status: sm.Status}, string(key), nil
}

// BillingKey opens a method's billing key. A deleted method, or a key that
// does not open under the key it names, is payflow.ErrMethodUnusable (a
// decline); a database error or a key this process does not hold yet is
// returned as it is, to be retried.
func (m *methodSource) BillingKey(ctx context.Context, methodID string) (string, error) {
	sm, err := m.st.MethodByID(ctx, methodID)
	if errors.Is(err, payflow.ErrNotFound) {
		return "", fmt.Errorf("%w: method deleted", payflow.ErrMethodUnusable)
	}
	if err != nil {
		return "", err
	}
	key, err := m.vault.Open(sm.BillingKeyEnc, []byte(sm.ID))
	if errors.Is(err, vault.ErrOpen) {
		return "", fmt.Errorf("%w: %v", payflow.ErrMethodUnusable, err)
	}
	return string(key), err
}
