package store

import "context"

// MigrateTo applies migrations up to version, for tests of an upgrade.
func MigrateTo(ctx context.Context, dsn string, version int32) error {
	return migrateTo(ctx, dsn, Options{}, version)
}
