package bench

import (
	"fmt"
	"html/template"
	"io"
	"math"
	"sort"
	"strconv"
	"time"
)

// WriteHTML writes the report as one self-contained HTML page: the figures
// Print writes, and charts drawn here as inline SVG (throughput and the
// database's commits per second against the ceiling, p50 and p99 latency
// per second, the group commit's batch sizes). It refers to nothing outside
// itself: no script, stylesheet, font or image.
func (r Report) WriteHTML(w io.Writer) error {
	secs := make([]float64, len(r.Seconds))
	results, commits, p50, p99 := make([]float64, len(secs)), make([]float64, len(secs)), make([]float64, len(secs)), make([]float64, len(secs))
	for i, s := range r.Seconds {
		secs[i] = float64(i) + 0.5 // the middle of the second
		results[i], commits[i] = float64(s.Results), float64(s.Commits)
		p50[i], p99[i] = ms(s.P50), ms(s.P99)
		if s.Results == 0 {
			p50[i], p99[i] = math.NaN(), math.NaN() // no result, no latency
		}
	}
	throughput := lineChart("Throughput per second", "per second", secs, []series{
		{Name: "results", Color: "#1f77b4", Y: results},
		{Name: "commits", Label: "Postgres commits", Color: "#ff7f0e", Y: commits},
	}, []hline{{Name: "ceiling", Label: fmt.Sprintf("ceiling %.0f tx/s", r.CeilingTPS), Color: "#d62728", Y: r.CeilingTPS}})
	latency := lineChart("Request → result latency, by the second the result arrived", "ms", secs, []series{
		{Name: "p50", Color: "#2ca02c", Y: p50},
		{Name: "p99", Color: "#9467bd", Y: p99},
	}, nil)
	data := struct {
		R                      Report
		Ratio, PerCharge       float64
		Charts                 []chart
		Elapsed, P50, P95, P99 string
		RelayP50, RelayP99     string
	}{
		R: r, PerCharge: r.CommitsPerCharge(), Charts: []chart{throughput, latency, batchChart(r.BatchSizes, r.BatchMean)},
		Elapsed: round(r.Elapsed), P50: round(r.P50), P95: round(r.P95), P99: round(r.P99),
		RelayP50: round(r.RelayLagP50), RelayP99: round(r.RelayLagP99),
	}
	if r.CeilingTPS > 0 {
		data.Ratio = r.Throughput / r.CeilingTPS
	}
	return page.Execute(w, data)
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func round(d time.Duration) string { return d.Round(time.Millisecond).String() }

// The plot area of every chart, in SVG units; the page's axes are drawn
// along its left and bottom edges (x 60 to 580, y 30 to 220).
const (
	left, top    = 60, 30
	plotW, plotH = 520, 190
)

type chart struct {
	Title, YLabel  string
	XTicks, YTicks []tick
	Lines          []line
	Bars           []bar
	Legend         []legend
}

type series struct {
	Name, Label, Color string
	Y                  []float64 // NaN: no point
}

type hline struct {
	Name, Label, Color string
	Y                  float64 // 0: none
}

type tick struct {
	At    string // x or y in SVG units
	Label string
}

type line struct {
	Series, Color, Points string
	Dots                  []dot // a mark at each point, when not Dashed
	Dashed                bool
}

type dot struct{ X, Y string }

type bar struct {
	Series, Color, X, Y, W, H, Title string
}

type legend struct {
	Color, Label, Y string
}

func f1(v float64) string { return strconv.FormatFloat(v, 'f', 1, 64) }

func num(v float64) string { return strconv.FormatFloat(v, 'g', 6, 64) }

// lineChart plots ys against xs (seconds) and horizontal lines across.
func lineChart(title, ylabel string, xs []float64, ys []series, hs []hline) chart {
	c := chart{Title: title, YLabel: ylabel}
	xMax, yMax := 1.0, 1.0
	for _, x := range xs {
		xMax = math.Max(xMax, x+0.5)
	}
	for _, s := range ys {
		for _, y := range s.Y {
			if !math.IsNaN(y) {
				yMax = math.Max(yMax, y)
			}
		}
	}
	for _, h := range hs {
		yMax = math.Max(yMax, h.Y)
	}
	xStep, yStep := niceStep(xMax), niceStep(yMax)
	yMax = math.Ceil(yMax/yStep) * yStep
	px := func(x float64) float64 { return left + x/xMax*plotW }
	py := func(y float64) float64 { return top + plotH - y/yMax*plotH }
	for i := 0; float64(i)*xStep <= xMax; i++ {
		x := float64(i) * xStep
		c.XTicks = append(c.XTicks, tick{At: f1(px(x)), Label: num(x) + " s"})
	}
	for i := 0; float64(i)*yStep <= yMax*1.0001; i++ {
		y := float64(i) * yStep
		c.YTicks = append(c.YTicks, tick{At: f1(py(y)), Label: num(y)})
	}
	for _, s := range ys {
		l := line{Series: s.Name, Color: s.Color}
		for i, y := range s.Y {
			if !math.IsNaN(y) {
				d := dot{X: f1(px(xs[i])), Y: f1(py(y))}
				l.Points += d.X + "," + d.Y + " "
				l.Dots = append(l.Dots, d)
			}
		}
		c.Lines = append(c.Lines, l)
		c.addLegend(s.Color, or(s.Label, s.Name))
	}
	for _, h := range hs {
		if h.Y > 0 {
			c.Lines = append(c.Lines, line{Series: h.Name, Color: h.Color, Dashed: true,
				Points: f1(left) + "," + f1(py(h.Y)) + " " + f1(left+plotW) + "," + f1(py(h.Y))})
			c.addLegend(h.Color, or(h.Label, h.Name))
		}
	}
	return c
}

// batchChart draws the share of each kind's flushes per batch-size bucket,
// the kinds side by side.
func batchChart(sizes map[string][]Bucket, mean map[string]float64) chart {
	c := chart{Title: "Group-commit batch sizes (payflow_group_commit_batch_size)", YLabel: "% of flushes"}
	var kinds []string
	for k := range sizes {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	colors := []string{"#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b"}
	nb := 0
	for _, k := range kinds {
		nb = max(nb, len(sizes[k]))
	}
	for y := 0; y <= 100; y += 20 {
		c.YTicks = append(c.YTicks, tick{At: f1(top + plotH - float64(y)/100*plotH), Label: strconv.Itoa(y)})
	}
	if nb == 0 || len(kinds) == 0 {
		return c
	}
	slot := float64(plotW) / float64(nb)
	barW := slot * 0.8 / float64(len(kinds))
	for ki, k := range kinds {
		color := colors[ki%len(colors)]
		var total uint64
		for _, b := range sizes[k] {
			total += b.Count
		}
		for bi, b := range sizes[k] {
			share := 0.0
			if total > 0 {
				share = float64(b.Count) / float64(total)
			}
			x := left + float64(bi)*slot + slot*0.1 + float64(ki)*barW
			c.Bars = append(c.Bars, bar{Series: k, Color: color, X: f1(x), Y: f1(top + plotH - share*plotH), W: f1(barW), H: f1(share * plotH),
				Title: fmt.Sprintf("%s, batch %s: %d flushes (%.0f%%)", k, bucketLabel(sizes[k], bi), b.Count, 100*share)})
		}
		c.addLegend(color, fmt.Sprintf("%s (mean %.1f)", k, mean[k]))
	}
	for bi := range sizes[kinds[0]] {
		c.XTicks = append(c.XTicks, tick{At: f1(left + (float64(bi)+0.5)*slot), Label: bucketLabel(sizes[kinds[0]], bi)})
	}
	return c
}

// bucketLabel names bucket i by the sizes it holds.
func bucketLabel(bs []Bucket, i int) string {
	lo := 0.0
	if i > 0 {
		lo = bs[i-1].UpTo
	}
	switch {
	case math.IsInf(bs[i].UpTo, 1):
		return ">" + num(lo)
	case math.Floor(lo)+1 >= bs[i].UpTo:
		return num(bs[i].UpTo)
	}
	return num(math.Floor(lo)+1) + "–" + num(bs[i].UpTo)
}

func (c *chart) addLegend(color, label string) {
	c.Legend = append(c.Legend, legend{Color: color, Label: label, Y: strconv.Itoa(top + 10 + 18*len(c.Legend))})
}

func or(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// niceStep is a tick step of 1, 2 or 5 times a power of ten giving about
// five ticks up to max.
func niceStep(max float64) float64 {
	raw := max / 5
	p := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5} {
		if m*p >= raw {
			return m * p
		}
	}
	return 10 * p
}

var page = template.Must(template.New("report").Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8"/>
<title>payflow bench</title>
<style>
body { font: 14px sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; }
td { padding: 2px 12px 2px 0; vertical-align: top; }
svg text { font: 12px sans-serif; }
</style>
</head>
<body>
<h1>payflow bench</h1>
<p>{{.R.Setup}}</p>
<table>
<tr><td>results</td><td>{{.R.Results}} of {{.R.Charges}} (missing {{.R.Missing}}, duplicates {{.R.Duplicates}}, failed {{.R.Failed}}, rejected {{.R.Rejected}})</td></tr>
<tr><td>throughput</td><td>{{printf "%.0f" .R.Throughput}} charges/s in {{.Elapsed}}</td></tr>
{{- if .R.CeilingTPS}}
<tr><td>Postgres ceiling</td><td>{{printf "%.0f" .R.CeilingTPS}} tx/s (state row + outbox row, plain pgx loop, same run); payflow/ceiling {{printf "%.2f" .Ratio}}</td></tr>
{{- end}}
<tr><td>latency</td><td>p50 {{.P50}}, p95 {{.P95}}, p99 {{.P99}} (request published → result consumed)</td></tr>
<tr><td>relay lag</td><td>{{if .R.RelayLagP99}}p50 {{.RelayP50}}, p99 {{.RelayP99}} (result written → broker's acknowledgement){{else}}not measured{{end}}</td></tr>
<tr><td>Postgres commits</td><td>{{printf "%.2f" .PerCharge}} per charge ({{.R.Commits}} in database {{.R.Database}} over the load phase: every commit in that database)</td></tr>
<tr><td>peak RSS</td><td>{{printf "%.0f" .R.PeakRSSMB}} MB{{if .R.RSSOf}} ({{.R.RSSOf}}){{end}}</td></tr>
</table>
{{- range .Charts}}
<h2>{{.Title}}</h2>
<svg width="800" height="260" viewBox="0 0 800 260" role="img" aria-label="{{.Title}}">
<text x="60" y="16">{{.YLabel}}</text>
{{- range .YTicks}}
<line x1="60" y1="{{.At}}" x2="580" y2="{{.At}}" stroke="#eee"/><text x="54" y="{{.At}}" text-anchor="end" dominant-baseline="middle">{{.Label}}</text>
{{- end}}
<line x1="60" y1="220" x2="580" y2="220" stroke="#444"/>
<line x1="60" y1="30" x2="60" y2="220" stroke="#444"/>
{{- range .XTicks}}
<text x="{{.At}}" y="238" text-anchor="middle">{{.Label}}</text>
{{- end}}
{{- range .Bars}}
<rect data-series="{{.Series}}" x="{{.X}}" y="{{.Y}}" width="{{.W}}" height="{{.H}}" fill="{{.Color}}"><title>{{.Title}}</title></rect>
{{- end}}
{{- range .Lines}}
<polyline data-series="{{.Series}}" points="{{.Points}}" fill="none" stroke="{{.Color}}" stroke-width="1.5"{{if .Dashed}} stroke-dasharray="6 4"{{end}}/>
{{- $color := .Color}}
{{- range .Dots}}
<circle cx="{{.X}}" cy="{{.Y}}" r="2" fill="{{$color}}"/>
{{- end}}
{{- end}}
{{- range .Legend}}
<rect x="592" y="{{.Y}}" width="12" height="3" fill="{{.Color}}"/><text x="610" y="{{.Y}}" dominant-baseline="middle">{{.Label}}</text>
{{- end}}
</svg>
{{- end}}
</body>
</html>
`))
