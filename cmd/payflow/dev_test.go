//go:build !production

package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
)

// runPayflow runs the payflow command line in this process, as the binary
// would, and returns its output and exit code.
func runPayflow(ctx context.Context, args ...string) (string, int) {
	root := rootCmd()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err != nil {
		out.WriteString(err.Error())
	}
	return out.String(), exitCode(err)
}

// `dev --only broker` takes broker alone and no flag of the parts it does
// not run.
func TestDevOnlyBrokerOptions(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"dev", "--only", "pgsim"}, `--only "pgsim"`},
		{[]string{"dev", "--only", "broker", "--http-addr", "127.0.0.1:0"}, "--http-addr"},
	} {
		if out, code := runPayflow(ctx, c.args...); code != 2 || !strings.Contains(out, c.want) {
			t.Errorf("%v: exit %d, want 2 naming %s: %s", c.args, code, c.want, out)
		}
	}
}
