package store

// MigrateTo applies migrations up to version, for tests of an upgrade.
var MigrateTo = migrateTo
