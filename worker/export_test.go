package worker

import "github.com/payflow/payflow/events"

// ChecksAccept reports whether payflow's own checks (strict decoding and
// the money rules, as the pipeline runs them, without the schema) accept
// data as the data of a typ request.
func ChecksAccept(typ string, data []byte) bool {
	env := events.Envelope{Type: typ, Data: data}
	r := (&Worker{}).request(env)
	if r == nil {
		return false
	}
	_, err := checks(env, r)
	return err == nil
}
