package store

import (
	"context"
	"errors"
	"io"
	"net"

	"github.com/jackc/pgx/v5/pgconn"
)

// Temporary reports whether err says the database is not available right
// now (unreachable, restarting, overloaded, a connection lost mid-statement,
// a transaction that lost a race), so that the same work will succeed once
// it is: the caller should retry without bound. Anything else, above all a
// statement the server refuses for what it carries (class 22 data
// exceptions such as 22021, a NUL byte in text; class 23 integrity; class
// 42 syntax), fails the same way every time and is not temporary.
func Temporary(err error) bool {
	if err == nil {
		return false
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return temporarySQLState(pgErr.Code)
	}
	var connectErr *pgconn.ConnectError
	var netErr net.Error
	switch {
	case pgconn.SafeToRetry(err), pgconn.Timeout(err),
		errors.As(err, &connectErr), errors.As(err, &netErr),
		errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		// A deadline or a shutdown ended the work, not its content.
		errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return true
	}
	return false
}

// temporarySQLState: connection exceptions (08), transaction rollbacks
// such as serialization failures and deadlocks (40), insufficient resources
// (53), operator intervention such as a shutdown or a cancelled statement
// (57), system errors (58), and lock_not_available (55P03).
func temporarySQLState(code string) bool {
	if code == "55P03" {
		return true
	}
	if len(code) < 2 {
		return false
	}
	switch code[:2] {
	case "08", "40", "53", "57", "58":
		return true
	}
	return false
}

func isUniqueViolation(err error) bool {
	var pgErr interface{ SQLState() string }
	return errors.As(err, &pgErr) && pgErr.SQLState() == "23505"
}
