-- The W3C trace context (traceparent, tracestate) of the request whose
-- transaction wrote the event, so the relay's publication continues that
-- trace and the published message carries it in its headers. NULL when the
-- request was not traced. A nullable column without a default is added
-- without rewriting the table.
ALTER TABLE outbox ADD COLUMN traceparent text, ADD COLUMN tracestate text;
