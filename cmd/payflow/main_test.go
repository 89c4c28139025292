package main

import (
	"bytes"
	"runtime"
	"strings"
	"testing"

	"github.com/spf13/cobra"
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

// Every command refuses arguments it does not take, and a command line
// that cannot work is a usage error: exit code 2, before anything connects.
func TestUsageErrorsExit2(t *testing.T) {
	t.Setenv("DATABASE_URL", "")
	t.Setenv("PAYFLOW_KAFKA_BROKERS", "")
	var paths [][]string
	var walk func(c *cobra.Command, path []string)
	walk = func(c *cobra.Command, path []string) {
		for _, sub := range c.Commands() {
			if sub.Name() == "help" || sub.Name() == "completion" {
				continue
			}
			p := append(append([]string{}, path...), sub.Name())
			paths = append(paths, p)
			walk(sub, p)
		}
	}
	walk(rootCmd(), nil)
	if len(paths) < 12 {
		t.Fatalf("only %d commands: %v", len(paths), paths)
	}
	cases := [][]string{{"no-such-command"}, {"serve", "--no-such-flag"}, {"serve"}, {"migrate"},
		{"serve", "--db-connect-timeout", "soon"}}
	for _, p := range paths {
		cases = append(cases, append(p, "stray-argument"))
	}
	for _, args := range cases {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			out, code := run(t, args...)
			if code != 2 {
				t.Fatalf("exit %d, want 2: %s", code, out)
			}
		})
	}
	for name, v := range map[string]string{"PAYFLOW_DB_CONNECT_TIMEOUT": "soon", "PAYFLOW_DB_MAX_CONNS": "many"} {
		t.Run(name, func(t *testing.T) {
			t.Setenv(name, v)
			out, code := run(t, "serve", "--brokers", "127.0.0.1:1", "--database-url", "postgres://127.0.0.1:1/x", "--pg-url", "http://127.0.0.1:1")
			if code != 2 || !strings.Contains(out, name) {
				t.Fatalf("exit %d, want 2 naming %s: %s", code, name, out)
			}
		})
	}
}

// A command that only groups others shows its help.
func TestGroupCommandsShowHelp(t *testing.T) {
	for _, args := range [][]string{nil, {"dlq"}} {
		out, code := run(t, args...)
		if code != 0 || !strings.Contains(out, "Available Commands") {
			t.Fatalf("%v: exit %d: %s", args, code, out)
		}
	}
}
