package main

import (
	"errors"

	"github.com/spf13/cobra"
)

func benchCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "bench",
		Short: "Run the load benchmark (workload W1, see docs/benchmarks.md)",
		RunE: func(cmd *cobra.Command, _ []string) error {
			return errors.New("bench: not built yet")
		},
	}
}
