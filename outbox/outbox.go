// Package outbox owns the transactional outbox: result events are written
// in the same database transaction as the state change they report, and the
// Relay publishes them to Kafka afterwards, at least once and in order per
// key.
//
// Ordering rests on one invariant kept by every writer: a transaction that
// changes a charge locks the charge's row before it inserts its outbox rows,
// so two transactions of the same charge take outbox ids in commit order
// (rows of a charge are locked FOR NO KEY UPDATE: enough to order writers,
// without conflicting with foreign-key checks).
// The relay reads rows that are still unpublished (not "ids above the last
// one published", which skips rows of transactions that took an id early and
// committed late) in id order, and only one relay publishes at a time.
package outbox

import (
	"context"

	"github.com/jackc/pgx/v5/pgconn"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// Channel is the LISTEN/NOTIFY channel that wakes the relay.
const Channel = "payflow_outbox"

// Message is one event waiting to be published.
type Message struct {
	EventID string // CloudEvent id; unique: a second insert of it is ignored
	Topic   string
	Key     []byte
	Value   []byte
	// TraceParent and TraceState are the W3C trace context the message
	// continues (empty: none). Insert stores the context of the span in
	// its ctx; the relay replaces them with its publication's, and the
	// publisher sends them as the traceparent and tracestate headers.
	TraceParent string
	TraceState  string
}

// Execer is what Insert needs: a pgx.Tx, *pgx.Conn or *pgxpool.Pool.
type Execer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// InsertSQL inserts the messages passed as six parallel arrays ($1 event
// ids, $2 topics, $3 keys, $4 values, $5 traceparents, $6 tracestates; see
// Args and TraceArgs). A message whose event id is already present is
// skipped: the same transition written twice yields one event. It does not
// NOTIFY: see Notifier.
const InsertSQL = `INSERT INTO outbox (event_id, topic, key, value, traceparent, tracestate)
	SELECT * FROM unnest($1::uuid[], $2::text[], $3::bytea[], $4::bytea[], $5::text[], $6::text[])
	ON CONFLICT (event_id) DO NOTHING`

// Insert writes msgs with db, normally inside the transaction that makes the
// change they report, with the trace context of ctx's span.
func Insert(ctx context.Context, db Execer, msgs ...Message) error {
	if len(msgs) == 0 {
		return nil
	}
	_, err := db.Exec(ctx, InsertSQL, append(Args(msgs), TraceArgs(ctx, msgs)...)...)
	return err
}

// TraceArgs returns the traceparent and tracestate of msgs as two text
// arrays (NULL for none): a message's own, else that of the span in ctx, so
// the event's publication continues the trace of the request that caused
// it. Without a recording or remote span in ctx (tracing off) it costs a
// context look-up.
func TraceArgs(ctx context.Context, msgs []Message) []any {
	parents := make([]*string, len(msgs))
	states := make([]*string, len(msgs))
	var own Message
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		c := propagation.MapCarrier{}
		propagation.TraceContext{}.Inject(ctx, c)
		own.TraceParent, own.TraceState = c["traceparent"], c["tracestate"]
	}
	for i, m := range msgs {
		if m.TraceParent == "" {
			m.TraceParent, m.TraceState = own.TraceParent, own.TraceState
		}
		if m.TraceParent != "" {
			parents[i] = &m.TraceParent
		}
		if m.TraceState != "" {
			states[i] = &m.TraceState
		}
	}
	return []any{parents, states}
}

// Args returns msgs as the four array arguments of InsertSQL, for statements
// that embed the insert in a larger one.
func Args(msgs []Message) []any {
	ids := make([]string, len(msgs))
	topics := make([]string, len(msgs))
	keys := make([][]byte, len(msgs))
	values := make([][]byte, len(msgs))
	for i, m := range msgs {
		ids[i], topics[i], keys[i], values[i] = m.EventID, m.Topic, m.Key, m.Value
	}
	return []any{ids, topics, keys, values}
}
