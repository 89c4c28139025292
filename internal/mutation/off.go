//go:build !mutation

// Package mutation lets the simulation put fixed money bugs back, one at a
// time, to prove that it finds them (docs/reliability.md keeps the table).
// Only a build with the "mutation" tag can switch one on; in every other
// build On is a constant false and the switches compile away.
package mutation

import "errors"

// On reports whether the named bug is put back. Without the mutation build
// tag it is always false.
func On(string) bool { return false }

// Set puts the named bug back; without the mutation build tag it cannot.
func Set(name string) error {
	if name == "" {
		return nil
	}
	return errors.New("mutation: this build cannot put bugs back (build with -tags mutation)")
}
