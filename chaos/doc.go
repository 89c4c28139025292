// Package chaos holds payflow's crash tests: real payflow processes in one
// consumer group are killed with SIGKILL at random moments while charges
// stream in and the PG simulator fails and times out, then restarted; at the
// end the invariant checker must find nothing wrong. Run them with
// `go test ./chaos` (skipped with -short); -chaos.kills raises the count.
package chaos
