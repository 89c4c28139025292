//go:build mutation

package mutation

import "sync/atomic"

var active atomic.Value

// Set puts the named bug back ("" for none).
func Set(name string) { active.Store(name) }

// On reports whether the named bug is put back.
func On(name string) bool {
	s, _ := active.Load().(string)
	return s == name
}
