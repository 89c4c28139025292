package events_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"sigs.k8s.io/yaml"

	"github.com/payflow/payflow/events"
)

var requestTypes = []string{events.TypeChargeRequested, events.TypeRefundRequested, events.TypeRepayRequested, events.TypeCancelRequested}

var resultTypes = []string{events.TypeChargeProcessed, events.TypeChargeFailed, events.TypeSettled, events.TypeRefundSucceeded,
	events.TypeRefundFailed, events.TypeRepayProcessed, events.TypeBillCancelled, events.TypeRejected}

// Every event type of the contract has a data schema, every schema file is
// used, and each compiles.
func TestEveryEventTypeHasASchema(t *testing.T) {
	for _, typ := range slices.Concat(requestTypes, resultTypes) {
		if events.DataSchema(typ) == nil {
			t.Errorf("%s has no data schema", typ)
		}
	}
	if len(events.DataSchemas) != len(requestTypes)+len(resultTypes) {
		t.Errorf("DataSchemas names %d types, the contract %d", len(events.DataSchemas), len(requestTypes)+len(resultTypes))
	}
	used := map[string]bool{"common.json": true, events.DeadLetterHeadersSchema: true,
		events.RequestEnvelopeSchema: true, events.ResultEnvelopeSchema: true}
	for _, f := range events.DataSchemas {
		used[f] = true
	}
	files, _ := filepath.Glob("schemas/*.json")
	for _, f := range files {
		if !used[filepath.Base(f)] {
			t.Errorf("%s is not the schema of any event", f)
		}
	}
	if len(files) != len(used) {
		t.Errorf("%d schema files, %d used", len(files), len(used))
	}
}

// asyncAPI is events/asyncapi.yaml as JSON values.
func asyncAPI(t *testing.T) map[string]any {
	t.Helper()
	b, err := os.ReadFile("asyncapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	j, err := yaml.YAMLToJSON(b)
	if err != nil {
		t.Fatal(err)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(j))
	if err != nil {
		t.Fatal(err)
	}
	return doc.(map[string]any)
}

const asyncAPIURL = "file:///payflow/events/asyncapi.json"

// messageSchemas compiles the payload and headers schema of every message
// of the AsyncAPI document, resolving its references to the schema files
// as a reader of the document would.
func messageSchemas(t *testing.T, doc map[string]any) (payloads, headers map[string]*jsonschema.Schema) {
	t.Helper()
	c := events.NewSchemaCompiler()
	if err := c.AddResource(asyncAPIURL, doc); err != nil {
		t.Fatal(err)
	}
	if err := events.AddSchemaFiles(c, "file:///payflow/events/schemas/", os.DirFS("."), "schemas"); err != nil {
		t.Fatal(err)
	}
	payloads, headers = map[string]*jsonschema.Schema{}, map[string]*jsonschema.Schema{}
	msgs := get(doc, "components", "messages").(map[string]any)
	for key, m := range msgs {
		name, _ := get(m, "name").(string)
		s, err := c.Compile(asyncAPIURL + "#/components/messages/" + key + "/payload")
		if err != nil {
			t.Fatalf("message %s: payload: %v", key, err)
		}
		payloads[name] = s
		loc := "#/components/messages/" + key + "/headers"
		if get(m, "headers") == nil {
			loc = "#/components/messageTraits/" + traitName(m) + "/headers"
		}
		if h, err := c.Compile(asyncAPIURL + loc); err == nil {
			headers[name] = h
		} else {
			t.Fatalf("message %s: headers: %v", key, err)
		}
	}
	return payloads, headers
}

func traitName(m any) string {
	traits, _ := get(m, "traits").([]any)
	if len(traits) == 0 {
		return ""
	}
	ref, _ := get(traits[0], "$ref").(string)
	return strings.TrimPrefix(ref, "#/components/messageTraits/")
}

// get follows keys through nested objects; nil where one is missing.
func get(v any, keys ...string) any {
	for _, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

// The AsyncAPI document names the contract's topics and, on each, exactly
// the event types payflow reads or writes there; every reference in it
// resolves, and every message's schema compiles.
func TestAsyncAPIDocumentIsTheContract(t *testing.T) {
	doc := asyncAPI(t)
	if doc["asyncapi"] != "3.0.0" {
		t.Fatalf("asyncapi = %v", doc["asyncapi"])
	}
	for ch, want := range map[string]struct {
		topic string
		types []string
	}{
		"paymentRequests":    {events.TopicRequests, requestTypes},
		"paymentEvents":      {events.TopicEvents, resultTypes},
		"paymentRequestsDlq": {events.TopicDLQ, []string{"dead-letter"}},
	} {
		if got := get(doc, "channels", ch, "address"); got != want.topic {
			t.Errorf("channel %s: address %v, want %s", ch, got, want.topic)
		}
		var names []string
		for key, m := range get(doc, "channels", ch, "messages").(map[string]any) {
			ref, _ := get(m, "$ref").(string)
			target := resolve(t, doc, ref)
			if target == nil {
				t.Fatalf("channel %s message %s: %q does not resolve", ch, key, ref)
			}
			names = append(names, get(target, "name").(string))
		}
		slices.Sort(names)
		wantNames := slices.Sorted(slices.Values(want.types))
		if !slices.Equal(names, wantNames) {
			t.Errorf("channel %s carries %v, want %v", ch, names, wantNames)
		}
	}
	// Every internal reference resolves (file references are resolved by
	// compiling the messages below).
	walk(doc, func(ref string) {
		if strings.HasPrefix(ref, "#") && resolve(t, doc, ref) == nil {
			t.Errorf("reference %q does not resolve", ref)
		}
	})
	payloads, _ := messageSchemas(t, doc)
	for _, typ := range slices.Concat(requestTypes, resultTypes) {
		if payloads[typ] == nil {
			t.Errorf("no message for %s", typ)
		}
	}
}

func resolve(t *testing.T, doc any, ref string) any {
	t.Helper()
	if !strings.HasPrefix(ref, "#/") {
		return nil
	}
	return get(doc, strings.Split(strings.TrimPrefix(ref, "#/"), "/")...)
}

func walk(v any, f func(ref string)) {
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			if s, ok := x.(string); ok && k == "$ref" {
				f(s)
			}
			walk(x, f)
		}
	case []any:
		for _, x := range v {
			walk(x, f)
		}
	}
}

// The examples in the schema files, and events encoded by payflow from
// them, are valid under the AsyncAPI document's message schemas; a
// message under another type's schema, or with its data broken, is not
// (so the schemas can fail).
func TestSchemaExamplesAreValidMessages(t *testing.T) {
	payloads, _ := messageSchemas(t, asyncAPI(t))
	for typ, file := range events.DataSchemas {
		b, err := os.ReadFile(filepath.Join("schemas", file))
		if err != nil {
			t.Fatal(err)
		}
		var s struct{ Examples []json.RawMessage }
		if err := json.Unmarshal(b, &s); err != nil {
			t.Fatal(err)
		}
		if len(s.Examples) == 0 {
			t.Errorf("%s has no example", file)
		}
		for _, ex := range s.Examples {
			var data any
			_ = json.Unmarshal(ex, &data)
			var value []byte
			if slices.Contains(requestTypes, typ) {
				value, _ = json.Marshal(map[string]any{"specversion": "1.0", "id": "e-1", "source": "shop", "type": typ,
					"subject": "c-1", "time": "2026-11-25T09:30:00Z", "datacontenttype": "application/json", "data": data})
			} else {
				value, err = events.Encode("e-1", typ, "c-1", time.Now(), data)
				if err != nil {
					t.Fatal(err)
				}
			}
			if err := validate(payloads[typ], value); err != nil {
				t.Errorf("%s example: %v\n%s", typ, err, value)
			}
			if err := events.ValidateData(typ, ex); err != nil {
				t.Errorf("%s example: %v", typ, err)
			}
			other := events.TypeSettled
			if typ == other {
				other = events.TypeBillCancelled
			}
			if slices.Contains(requestTypes, typ) {
				other = events.TypeChargeRequested
				if typ == other {
					other = events.TypeRefundRequested
				}
			}
			if validate(payloads[other], value) == nil {
				t.Errorf("a %s event is valid as %s", typ, other)
			}
			broken := bytes.Replace(value, []byte(`"merchant_id":"`), []byte(`"merchant_id":7,"x":"`), 1)
			if validate(payloads[typ], broken) == nil {
				t.Errorf("%s with a numeric merchant_id is valid:\n%s", typ, broken)
			}
		}
	}
}

func validate(s *jsonschema.Schema, value []byte) error {
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(value))
	if err != nil {
		return err
	}
	return s.Validate(v)
}

// The request fixtures are well-formed events; the valid ones meet their
// schemas, each invalid one fails with the message its .want file holds.
func TestRequestFixtures(t *testing.T) {
	payloads, _ := messageSchemas(t, asyncAPI(t))
	valid, _ := filepath.Glob("testdata/requests/*.json")
	invalid, _ := filepath.Glob("testdata/requests/invalid/*.json")
	if len(valid) < 5 || len(invalid) < 10 {
		t.Fatalf("%d valid and %d invalid fixtures", len(valid), len(invalid))
	}
	for _, f := range slices.Concat(valid, invalid) {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		env, err := events.Decode(b)
		if err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		err = events.ValidateData(env.Type, env.Data)
		if filepath.Dir(f) == "testdata/requests" {
			if err != nil {
				t.Errorf("%s: %v", f, err)
			}
			if err := validate(payloads[env.Type], b); err != nil {
				t.Errorf("%s: not a valid %s message: %v", f, env.Type, err)
			}
			if err := events.CheckRequest(b); err != nil {
				t.Errorf("%s: %v", f, err)
			}
			continue
		}
		want, _ := os.ReadFile(strings.TrimSuffix(f, ".json") + ".want")
		var se *events.SchemaError
		if !errors.As(err, &se) || err.Error() != strings.TrimSpace(string(want)) {
			t.Errorf("%s: error %v, want %s", f, err, want)
		}
		if validate(payloads[env.Type], b) == nil {
			t.Errorf("%s: valid under the AsyncAPI message schema", f)
		}
	}
}

// The result fixtures (sample messages for consumers) cover every result
// type and meet the contract.
func TestResultFixtures(t *testing.T) {
	payloads, _ := messageSchemas(t, asyncAPI(t))
	files, _ := filepath.Glob("testdata/results/*.json")
	seen := map[string]bool{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := events.CheckResult(b); err != nil {
			t.Errorf("%s: %v", f, err)
		}
		var ev struct{ Type string }
		_ = json.Unmarshal(b, &ev)
		if err := validate(payloads[ev.Type], b); err != nil {
			t.Errorf("%s: not a valid %s message: %v", f, ev.Type, err)
		}
		seen[ev.Type] = true
	}
	for _, typ := range resultTypes {
		if !seen[typ] {
			t.Errorf("no fixture of %s", typ)
		}
	}
}

// CheckResult refuses what a consumer could not rely on: a time without
// milliseconds, an unknown field in data, a missing attribute.
func TestCheckResultRefusesDrift(t *testing.T) {
	good, err := os.ReadFile("testdata/results/settled-paid.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := events.CheckResult(good); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ old, new, want string }{
		{`"2026-11-25T09:30:01.456Z"`, `"2026-11-25T09:30:01Z"`, "time:"},
		{`"pg_tx_id"`, `"extra": 1, "pg_tx_id"`, "extra: is not a field of this event"},
		{`"status": "paid"`, `"status": "refunded"`, "status: must be one of"},
		{`"source": "payflow",`, ``, "source: is required"},
	} {
		bad := bytes.Replace(good, []byte(c.old), []byte(c.new), 1)
		if bytes.Equal(bad, good) {
			t.Fatalf("%q not in the fixture", c.old)
		}
		if err := events.CheckResult(bad); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s → %s: error %v, want %q", c.old, c.new, err, c.want)
		}
	}
}

// Dead-letter headers: the writer's and a stub's are valid; one without
// the error is not.
func TestDeadLetterHeadersSchema(t *testing.T) {
	h := map[string]string{"content-type": "text/plain", "dlq-error": "unparseable event: not JSON (syntax error at byte 1)",
		"dlq-source-topic": "payment.requests", "dlq-source-partition": "3", "dlq-source-offset": "1042", "dlq-time": "2026-11-25T09:30:00.123Z"}
	if err := events.CheckDeadLetterHeaders(h); err != nil {
		t.Fatal(err)
	}
	h["dlq-value-dropped"] = "70000"
	if err := events.CheckDeadLetterHeaders(h); err != nil {
		t.Fatal(err)
	}
	delete(h, "dlq-error")
	if err := events.CheckDeadLetterHeaders(h); err == nil || err.Error() != "dlq-error: is required" {
		t.Fatalf("err = %v", err)
	}
}
