package pgclient

import "errors"

// Capabilities says what a PG can do beyond what every Client promises.
// An adapter declares them by implementing Capable; one that does not can do
// everything (FullCapabilities), as payflow's own protocol and simulator can.
//
// Callers check them before they call, so that a request the PG cannot do
// is refused as not_supported instead of failing at the PG. Adapters refuse
// such requests themselves too, without calling the PG: an *Error of kind
// KindInvalid with Code CodeNotSupported (see NotSupported).
type Capabilities struct {
	// PartialRefund: a refund may return less than a bill's paid amount,
	// and several refunds may add up to it. Without it the PG cancels a
	// payment only in full: one refund of exactly the paid amount.
	PartialRefund bool
}

// FullCapabilities is what an adapter that declares nothing can do.
var FullCapabilities = Capabilities{PartialRefund: true}

// Capable is implemented by adapters whose PG cannot do everything.
type Capable interface {
	Capabilities() Capabilities
}

// CapabilitiesOf returns what the PG behind c can do: its declaration, or
// FullCapabilities.
func CapabilitiesOf(c Client) Capabilities {
	if cc, ok := c.(Capable); ok {
		return cc.Capabilities()
	}
	return FullCapabilities
}

// CodeNotSupported is the Code of the *Error (kind KindInvalid, so it is
// never retried) an adapter returns for a request its PG cannot do at all,
// e.g. a partial refund where the PG cancels only in full. The adapter sent
// nothing that could have acted on it. The worker answers such a request
// with a rejection of reason not_supported.
const CodeNotSupported = "not_supported"

// NotSupported reports whether err says the PG cannot do the request at all
// (CodeNotSupported).
func NotSupported(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Kind == KindInvalid && e.Code == CodeNotSupported
}

// TransportErrorKind classifies an error of an HTTP round trip (the
// http.Client's Do, or reading the answer), for adapters in other packages:
// KindTransient when the request cannot have reached the PG (neverConnected:
// no connection was obtained, or a refused connection, a DNS failure, a
// failed dial), else KindUnknown, since a timeout or a reset once connected
// may come after the PG acted.
func TransportErrorKind(err error, neverConnected bool) Kind {
	return transportKind(err, neverConnected)
}
