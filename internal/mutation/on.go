//go:build mutation

package mutation

import (
	"fmt"
	"slices"
	"sync/atomic"
)

var active atomic.Value

// Set puts the named bug back ("" for none).
func Set(name string) error {
	if name != "" && !slices.Contains(Names, name) {
		return fmt.Errorf("mutation: no mutation %q (there are %v)", name, Names)
	}
	active.Store(name)
	return nil
}

// On reports whether the named bug is put back.
func On(name string) bool {
	s, _ := active.Load().(string)
	return s == name
}
