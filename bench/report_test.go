package bench

import (
	"bytes"
	"encoding/xml"
	"io"
	"math"
	"strings"
	"testing"
	"time"
)

func TestWriteHTML(t *testing.T) {
	r := Report{Charges: 3000, Results: 3000, Throughput: 1500, Elapsed: 2 * time.Second, CeilingTPS: 2500,
		P50: 80 * time.Millisecond, P99: 300 * time.Millisecond, RelayLagP50: 4 * time.Millisecond, RelayLagP99: 20 * time.Millisecond,
		Database: "payflow_bench", Commits: 150, Setup: `W1 <script>alert("x")</script> & more`,
		Seconds: []Second{
			{Results: 1000, P50: 50 * time.Millisecond, P99: 90 * time.Millisecond, Commits: 60},
			{}, // a second without results draws no latency point
			{Results: 2000, P50: 70 * time.Millisecond, P99: 300 * time.Millisecond, Commits: 90},
		},
		BatchMean: map[string]float64{"create_charge": 3.5, "finish_<placing>": 40},
		BatchSizes: map[string][]Bucket{
			"create_charge":    {{1, 5}, {2, 5}, {4, 10}, {math.Inf(1), 0}},
			"finish_<placing>": {{1, 0}, {2, 1}, {4, 1}, {math.Inf(1), 8}},
		},
	}
	var b bytes.Buffer
	if err := r.WriteHTML(&b); err != nil {
		t.Fatal(err)
	}
	page := b.String()

	// Well-formed, and the expected series are there.
	points := map[string]string{}
	bars := map[string]int{}
	var text strings.Builder
	d := xml.NewDecoder(strings.NewReader(page))
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("not well-formed: %v", err)
		}
		switch tok := tok.(type) {
		case xml.StartElement:
			attr := map[string]string{}
			for _, a := range tok.Attr {
				attr[a.Name.Local] = a.Value
			}
			switch {
			case tok.Name.Local == "script" || tok.Name.Local == "link" || tok.Name.Local == "img":
				t.Errorf("a <%s> element", tok.Name.Local)
			case tok.Name.Local == "polyline":
				points[attr["data-series"]] = attr["points"]
			case tok.Name.Local == "rect" && attr["data-series"] != "":
				bars[attr["data-series"]]++
			}
		case xml.CharData:
			text.Write(tok)
		}
	}
	for _, s := range []string{"results", "commits", "ceiling", "p50", "p99"} {
		if points[s] == "" {
			t.Errorf("no %s line", s)
		}
	}
	if n := len(strings.Fields(points["results"])); n != 3 {
		t.Errorf("results line has %d points, want one per second (3)", n)
	}
	if n := len(strings.Fields(points["p99"])); n != 2 {
		t.Errorf("p99 line has %d points, want one per second with results (2)", n)
	}
	// The ceiling is a horizontal line above the results' peak of 2000.
	ceil := strings.Fields(points["ceiling"])
	if len(ceil) != 2 || ceil[0][strings.Index(ceil[0], ","):] != ceil[1][strings.Index(ceil[1], ","):] {
		t.Errorf("ceiling line %q is not horizontal", points["ceiling"])
	}
	if bars["create_charge"] != 4 || bars["finish_<placing>"] != 4 {
		t.Errorf("batch bars %v, want 4 for each kind", bars)
	}
	for _, want := range []string{`W1 <script>alert("x")</script> & more`, "0.05 per charge", "ceiling 2500 tx/s", "finish_<placing> (mean 40.0)"} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("the page's text lacks %q", want)
		}
	}

	// Nothing outside the page, and text escaped.
	for _, bad := range []string{"http:", "https:", "//", "url(", "@import", "<script", "src="} {
		if strings.Contains(page, bad) {
			t.Errorf("the page holds %q", bad)
		}
	}
	if !strings.Contains(page, "W1 &lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; more") {
		t.Error("the setup text is not escaped")
	}
}
