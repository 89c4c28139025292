// Package sim owns payflow's seeded simulation: it explores the money path
// mechanically, as FoundationDB and TigerBeetle test theirs. A run drives
// the real worker and store on a real Postgres database; only the edges are
// simulated: the PG (PG, with a ledger of what it executed), Kafka's
// delivery (partitions, offsets, a consumer group whose processes crash and
// lose partitions while still handling what they had fetched) and time (a
// virtual Clock for retries and budgets; a lease's expiry is a step).
//
// Every choice comes from one seeded generator and the run is sequential,
// so a seed replays the same schedule: requests of a few merchants on a few
// charge ids (so they collide), duplicates and resends, rebalances and
// crashes, PG faults (refused, unanswered with and without effect, landing
// late, crashing the caller before or after), customers paying, bills
// expiring, webhooks delivered, repeated, lost or with a wrong amount, and
// cards deleted between charges. After every step the model checks what
// must always hold; then faults stop, the world drains, and the model
// checks that every request reached its one outcome and that the database
// and the PG agree on every bill and every won.
package sim
