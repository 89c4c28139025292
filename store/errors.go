package store

import "errors"

// ErrNotFound is returned when the row asked for does not exist (or belongs
// to another merchant or member: callers must not learn the difference).
var ErrNotFound = errors.New("store: not found")
