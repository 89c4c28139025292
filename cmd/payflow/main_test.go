package main

import (
	"bytes"
	"runtime"
	"strings"
	"testing"
)

// run executes payflow with args and returns its output and exit code.
func run(t *testing.T, args ...string) (string, int) {
	t.Helper()
	root := rootCmd()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	err := root.Execute()
	if err != nil {
		out.WriteString(err.Error())
	}
	return out.String(), exitCode(err)
}

func TestVersionCommand(t *testing.T) {
	out, code := run(t, "version")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, out)
	}
	// A test binary records no version of its main module.
	if want := "payflow devel " + runtime.Version() + "\n"; out != want {
		t.Fatalf("version printed %q, want %q", out, want)
	}
	if !strings.HasPrefix(out, "payflow ") {
		t.Fatal(out)
	}
}
