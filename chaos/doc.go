// Package chaos holds payflow's crash tests: real payflow processes in one
// consumer group are killed with SIGKILL at random moments while requests
// stream in and the PG simulator fails and times out, then restarted, and
// Postgres is restarted under them; at the end the invariant checker must
// find nothing wrong. The requests are charges and, on the same keys,
// cancels that arrive while their bill is still being placed, refunds and
// re-payments (a second one right behind the first for some), some of them
// published twice under one event id or re-sent under a new one; the
// checker proves each got its one result and no money moved twice. Run them
// with `go test ./chaos` (skipped with -short); -chaos.kills raises the
// count, -chaos.keep copies the workers' logs out. A failure prints the
// workers' log lines that name the charges and bills of its violations.
package chaos
