package api

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
)

// Every endpoint the API serves is in api/openapi.json, and the document
// names no endpoint the API does not serve.
func TestOpenAPIHasEveryRoute(t *testing.T) {
	var doc struct {
		Paths map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(OpenAPI, &doc); err != nil {
		t.Fatal(err)
	}
	var documented []string
	for path, item := range doc.Paths {
		for method := range item {
			switch method {
			case "get", "put", "post", "delete", "patch", "head", "options", "trace":
				documented = append(documented, strings.ToUpper(method)+" "+path)
			}
		}
	}
	s := &server{Config: Config{Metrics: http.NotFoundHandler(), Webhooks: http.NotFoundHandler()}}
	var served []string
	for _, rt := range s.routes() {
		served = append(served, rt.pattern)
	}
	slices.Sort(documented)
	slices.Sort(served)
	if !slices.Equal(documented, served) {
		t.Fatalf("documented:\n%s\nserved:\n%s", strings.Join(documented, "\n"), strings.Join(served, "\n"))
	}
}
