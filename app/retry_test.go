package app

import (
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/payflow/payflow/pgclient"
)

// The consumer retries without bound only what waits on the database or
// the PG; anything else is dead-lettered after a few attempts.
func TestRetriable(t *testing.T) {
	for _, c := range []struct {
		err  error
		want bool
	}{
		{io.ErrUnexpectedEOF, true},
		{fmt.Errorf("worker: %w", &pgconn.PgError{Code: "57P01"}), true},
		{fmt.Errorf("worker: %w", &pgconn.PgError{Code: "22021"}), false},
		{&pgclient.Error{Op: "destroy_bill", Kind: pgclient.KindTransient}, true},
		{fmt.Errorf("worker: %w", &pgclient.Error{Op: "destroy_bill", Kind: pgclient.KindUnknown}), true},
		{&pgclient.Error{Op: "destroy_bill", Kind: pgclient.KindInvalid}, false},
		{errors.New("worker: encode payment.charge.processed: boom"), false}, // not a PG error: not "unknown"
	} {
		if got := retriable(c.err); got != c.want {
			t.Errorf("retriable(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}
