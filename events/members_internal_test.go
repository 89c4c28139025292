package events

import (
	"encoding/json"
	"reflect"
	"testing"
)

var memberSeeds = []string{
	`{"specversion":"1.0","id":"x","time":"2026-11-25T00:00:00Z","data":{"a":[1,{"b":"}"}]},"payflowsignature":"s"}`,
	`{"id":"x","id":"y"}`,
	`{"data":1,"data_base64":"AA=="}`,
	`{"d\u0061ta":{"x":1},"data":2}`,
	"{\"a\xff\":1,\"a\xfe\":2}",
	` { "time" : "t" , "data" : [ ] } `,
	`{"` + string(make([]byte, 40)) + `":1}`,
	`[1,2]`,
	`"s"`,
	`{}`,
}

// scanMembers finds in a valid document what the token-by-token scan
// finds: the same members, byte for byte, and the same first repeated key.
func FuzzScanMembersAgreesWithTokens(f *testing.F) {
	for _, s := range memberSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		membersAgree(t, data)
	})
}

func TestScanMembersAgreesWithTokens(t *testing.T) {
	dups := 0
	for _, s := range memberSeeds {
		if _, _, dup := membersAgree(t, []byte(s)); dup {
			dups++
		}
	}
	if dups < 3 {
		t.Fatalf("%d seeds repeat a key; the comparison needs some that do", dups)
	}
}

func membersAgree(t *testing.T, data []byte) (members, string, bool) {
	t.Helper()
	m, name, dup := scanMembers(data)
	if !json.Valid(data) {
		return m, name, dup
	}
	wm, wname, wdup := scanMemberTokens(data)
	if !reflect.DeepEqual(m, wm) || name != wname || dup != wdup {
		t.Fatalf("%q: scan %+v %q %v, tokens %+v %q %v", data, m, name, dup, wm, wname, wdup)
	}
	return m, name, dup
}
