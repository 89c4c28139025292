package pgclient_test

import (
	"fmt"
	"testing"

	"github.com/payflow/payflow/pgclient"
)

type fullOnly struct{ pgclient.Client }

func (fullOnly) Capabilities() pgclient.Capabilities { return pgclient.Capabilities{} }

func TestCapabilitiesDefaultToEverything(t *testing.T) {
	if got := pgclient.CapabilitiesOf(pgclient.NewHTTPClient("http://pg.invalid")); got != pgclient.FullCapabilities || !got.PartialRefund {
		t.Fatalf("an adapter that declares nothing: %+v", got)
	}
	if got := pgclient.CapabilitiesOf(fullOnly{}); got.PartialRefund {
		t.Fatalf("a declared full-cancel-only PG: %+v", got)
	}
}

func TestNotSupported(t *testing.T) {
	ns := &pgclient.Error{Op: "refund", Kind: pgclient.KindInvalid, Code: pgclient.CodeNotSupported, Message: "partial refund"}
	if !pgclient.NotSupported(ns) || !pgclient.NotSupported(fmt.Errorf("wrapped: %w", ns)) || pgclient.Retriable(ns) {
		t.Fatal("not recognised as not supported, or retriable")
	}
	for _, err := range []error{
		nil,
		fmt.Errorf("not_supported"),
		&pgclient.Error{Op: "refund", Kind: pgclient.KindConflict, Code: pgclient.CodeNotSupported},
		&pgclient.Error{Op: "refund", Kind: pgclient.KindInvalid, Code: "invalid_request"},
	} {
		if pgclient.NotSupported(err) {
			t.Fatalf("%v taken for not supported", err)
		}
	}
}
