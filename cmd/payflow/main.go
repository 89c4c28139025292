// Command payflow is the event-driven payment worker: `dev` and `demo` run
// everything in one process with no setup, `serve` is the production
// process, `migrate` applies the schema, `pgsim` runs the PG simulator and
// `bench` the load benchmark, `sim` the seeded simulation. Configuration comes from the environment
// (PAYFLOW_*, DATABASE_URL); flags override it.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/payflow/payflow/app"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := rootCmd().ExecuteContext(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, "payflow:", err)
	}
	stop()
	os.Exit(exitCode(err))
}

// rootCmd is the payflow command with all its subcommands.
func rootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "payflow",
		Short:         "Event-driven payment worker: charges, bills, refunds and settlements from Kafka, exactly once",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(devCmd(), demoCmd(), serveCmd(), migrateCmd(), pgsimCmd(), benchCmd(), simCmd(), checkCmd(), pgCmd(), healthcheckCmd(), rotateVaultKeyCmd(), dlqCmd(), versionCmd())
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return usagef("%v (see %s --help)", err, c.CommandPath())
	})
	refuseArgs(root)
	return root
}

// refuseArgs makes every command refuse what it does not take as a usage
// error (exit 2): arguments to a command that takes none, an unknown
// subcommand. A command that only groups others shows its help.
func refuseArgs(c *cobra.Command) {
	if c.HasSubCommands() {
		if !c.Runnable() {
			c.RunE = func(cmd *cobra.Command, _ []string) error { return cmd.Help() }
		}
		if c.Args == nil {
			c.Args = func(cmd *cobra.Command, args []string) error {
				if len(args) > 0 {
					return fmt.Errorf("unknown command %q for %q", args[0], cmd.CommandPath())
				}
				return nil
			}
		}
	}
	if c.Args == nil {
		c.Args = cobra.NoArgs
	}
	args := c.Args
	c.Args = func(cmd *cobra.Command, a []string) error {
		if err := args(cmd, a); err != nil {
			return usagef("%v (see %s --help)", err, cmd.CommandPath())
		}
		return nil
	}
	for _, sub := range c.Commands() {
		refuseArgs(sub)
	}
}

// versionCmd prints the build's version and Go release.
func versionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print payflow's version (\"devel\" for a build that did not record one) and the Go release it was built with",
		RunE: func(cmd *cobra.Command, _ []string) error {
			fmt.Fprintf(cmd.OutOrStdout(), "payflow %s %s\n", app.Version(), app.GoVersion())
			return nil
		},
	}
}

// usageError is a command line that cannot work as given; payflow exits 2
// for it, 1 for any other failure.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, a ...any) error { return &usageError{fmt.Sprintf(format, a...)} }

func exitCode(err error) int {
	var ue *usageError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ue):
		return 2
	}
	return 1
}

// newLogger logs JSON for machines (serve) or text for people (dev).
func newLogger(format string, level slog.Level) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	if strings.EqualFold(format, "json") {
		return slog.New(slog.NewJSONHandler(os.Stderr, opts))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, opts))
}

func env(name, fallback string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return fallback
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}
