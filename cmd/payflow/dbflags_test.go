package main

import (
	"testing"

	"github.com/spf13/pflag"

	"github.com/payflow/payflow/store"
)

// serve with the worker opens its whole pool at start: a connection opened
// under load costs the charges waiting for it (docs/benchmarks.md). Without
// the worker (the API, a relay of its own) the pool opens on demand. The
// pool's size still comes from the flag or the environment.
func TestServeWithTheWorkerKeepsAFullPool(t *testing.T) {
	t.Setenv("PAYFLOW_DB_MAX_CONNS", "12")
	fl := pflag.NewFlagSet("serve", pflag.ContinueOnError)
	var f dbFlags
	addDBFlags(fl, &f, true)
	if err := fl.Parse(nil); err != nil {
		t.Fatal(err)
	}
	for _, worker := range []bool{true, false} {
		o, err := f.options(fl, worker)
		if err != nil {
			t.Fatal(err)
		}
		want := int32(0)
		if worker {
			want = store.FullPool
		}
		if o.MinConns != want || o.MaxConns != 12 {
			t.Fatalf("worker %v: MinConns %d, MaxConns %d; want %d of 12", worker, o.MinConns, o.MaxConns, want)
		}
	}
}
