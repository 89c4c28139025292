package worker

import (
	"context"

	"github.com/payflow/payflow/events"
)

// HandleMessage executes one input Kafka message in either content mode of
// the CloudEvents Kafka binding: structured (the value is the event, as
// Handle takes it) or binary (the attributes in ce_ headers, the value the
// data). A binary-mode event is handled as its structured equivalent, with
// its data's bytes unchanged, so both modes meet the same checks. It
// returns what Handle returns; an error wrapping events.ErrUnparseable for
// headers that are not an event payflow reads.
func (w *Worker) HandleMessage(ctx context.Context, value []byte, headers []events.Header) error {
	structured, err := events.Structured(value, headers)
	if err != nil {
		return err
	}
	return w.Handle(ctx, structured)
}
