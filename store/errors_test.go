package store_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/payflow/payflow/payflow"
	"github.com/payflow/payflow/store"
)

type safeToRetry struct{}

func (safeToRetry) Error() string     { return "conn busy" }
func (safeToRetry) SafeToRetry() bool { return true }

// Temporary tells a database that is not there right now (retry until it
// is) from a statement it refuses for what it holds (retrying changes
// nothing: the consumer gives up after a few attempts).
func TestTemporary(t *testing.T) {
	// A real connection error: nothing listens on port 1.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, connErr := pgconn.Connect(ctx, "postgres://x@127.0.0.1:1/x?sslmode=disable&connect_timeout=2")
	var ce *pgconn.ConnectError
	if !errors.As(connErr, &ce) {
		t.Fatalf("connecting to a closed port: %T %v, want *pgconn.ConnectError", connErr, connErr)
	}
	pg := func(code string) error { return &pgconn.PgError{Severity: "ERROR", Code: code, Message: "m"} }
	for _, c := range []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"connect error", connErr, true},
		{"wrapped connect error", fmt.Errorf("worker: charge: %w", connErr), true},
		{"net error", &net.OpError{Op: "read", Net: "tcp", Err: errors.New("connection reset by peer")}, true},
		{"EOF", io.EOF, true},
		{"unexpected EOF", fmt.Errorf("store: %w", io.ErrUnexpectedEOF), true},
		{"deadline", context.DeadlineExceeded, true},
		{"wrapped deadline", fmt.Errorf("store: %w", context.DeadlineExceeded), true},
		{"cancelled", context.Canceled, true},
		{"safe to retry", fmt.Errorf("store: %w", safeToRetry{}), true},
		{"08006 connection failure", pg("08006"), true},
		{"08P01 protocol violation", pg("08P01"), true},
		{"40001 serialization failure", pg("40001"), true},
		{"40P01 deadlock", fmt.Errorf("store: %w", pg("40P01")), true},
		{"53300 too many connections", pg("53300"), true},
		{"53100 disk full", pg("53100"), true},
		{"57P01 admin shutdown", pg("57P01"), true},
		{"57P03 cannot connect now", pg("57P03"), true},
		{"57014 query canceled", pg("57014"), true},
		{"58030 io error", pg("58030"), true},
		{"55P03 lock not available", pg("55P03"), true},
		{"55000 object not in prerequisite state", pg("55000"), false},
		{"22021 NUL byte", pg("22021"), false},
		{"22P02 invalid text", fmt.Errorf("store: %w", pg("22P02")), false},
		{"22001 value too long", pg("22001"), false},
		{"23505 unique violation", pg("23505"), false},
		{"23502 not null violation", pg("23502"), false},
		{"42601 syntax error", pg("42601"), false},
		{"42P01 undefined table", pg("42P01"), false},
		{"XX000 internal error", pg("XX000"), false},
		{"no rows", pgx.ErrNoRows, false},
		{"not found", payflow.ErrNotFound, false},
		{"a validation error", &payflow.ValidationError{Field: "amount", Reason: "must be positive"}, false},
		{"anything else", errors.New("boom"), false},
	} {
		if got := store.Temporary(c.err); got != c.want {
			t.Errorf("%s: Temporary(%v) = %v, want %v", c.name, c.err, got, c.want)
		}
	}
}
