package main

import (
	"testing"

	"github.com/spf13/pflag"

	"github.com/payflow/payflow/store"
)

// serve opens its whole pool at start: a connection opened under load
// costs the charges waiting for it (docs/benchmarks.md). The pool's size
// still comes from the flag or the environment.
func TestServeKeepsAFullPool(t *testing.T) {
	t.Setenv("PAYFLOW_DB_MAX_CONNS", "12")
	fl := pflag.NewFlagSet("serve", pflag.ContinueOnError)
	var f dbFlags
	addDBFlags(fl, &f, true)
	if err := fl.Parse(nil); err != nil {
		t.Fatal(err)
	}
	o, err := f.options(fl)
	if err != nil {
		t.Fatal(err)
	}
	if o.MinConns != store.FullPool || o.MaxConns != 12 {
		t.Fatalf("serve's pool: MinConns %d, MaxConns %d; want a full pool (%d) of 12", o.MinConns, o.MaxConns, store.FullPool)
	}
}
