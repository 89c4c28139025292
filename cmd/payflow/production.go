//go:build production

package main

import (
	"github.com/spf13/cobra"
)

// The production build (go build -tags production, as the Dockerfile
// builds the image) leaves out the commands that exist for development,
// demonstration and testing, and with them the embedded broker, the
// throwaway Postgres and its container client, the PG simulator, the
// simulation and the benchmark: serve, migrate and the operator commands
// link none of them. Each left-out command answers with a usage error that
// says where it is, instead of "unknown command".

func devCmd() *cobra.Command   { return leftOut("dev") }
func demoCmd() *cobra.Command  { return leftOut("demo") }
func pgsimCmd() *cobra.Command { return leftOut("pgsim") }
func benchCmd() *cobra.Command { return leftOut("bench") }
func simCmd() *cobra.Command   { return leftOut("sim") }

func leftOut(name string) *cobra.Command {
	return &cobra.Command{
		Use:                name,
		Short:              "Not in the production build",
		Hidden:             true,
		DisableFlagParsing: true,
		Args:               cobra.ArbitraryArgs,
		RunE: func(*cobra.Command, []string) error {
			return usagef("%s is dev tooling, left out of the production build of payflow; "+
				"run it from a default build (go run ./cmd/payflow %s) or the image's dev target", name, name)
		},
	}
}
