// Package bench owns payflow's load benchmark (workload W1 and its
// variants): it drives a running payflow through Kafka exactly as upstream
// services do, reads every result from payment.events as a downstream
// consumer does, and measures, in the same run, the Postgres ceiling that
// bounds any design of this kind: a plain pgx loop of the same
// state-row + outbox-row transaction.
package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/segmentio/kafka-go"

	"github.com/payflow/payflow/events"
	"github.com/payflow/payflow/kafkaconf"
)

// Workload describes a run.
type Workload struct {
	Charges    int     // charge events to publish
	Customers  int     // distinct customers
	MemberRate float64 // share of customers who are members with a stored method
	Merchant   string
	// Rate paces publishing (charges per second); 0 publishes everything at
	// once, which measures throughput but makes latency a queueing figure.
	Rate    float64
	Timeout time.Duration // give up waiting for results after this long
	// CeilingClients and CeilingDuration configure the Postgres ceiling
	// measurement (0 clients skips it).
	CeilingClients  int
	CeilingDuration time.Duration
}

// W1 is the reference workload.
var W1 = Workload{Charges: 20000, Customers: 5000, MemberRate: 0.7, Merchant: "bench-merchant",
	Timeout: 5 * time.Minute, CeilingClients: 32, CeilingDuration: 5 * time.Second}

// Target is the payflow under test.
type Target struct {
	Brokers []string
	// Dial carries the brokers' TLS and SASL settings; nil: plaintext.
	Dial *kafkaconf.Dial
	// Topics names the request and result topics; zero: the contract's.
	Topics      kafkaconf.Topics
	DatabaseURL string
	// RegisterMember stores a usable method for a member before the run.
	RegisterMember func(ctx context.Context, memberID string) error
	// MetricsURL is payflow's /metrics, read for the relay's own lag.
	MetricsURL string
}

// Report is what a run measured.
type Report struct {
	Charges, Results, Duplicates, Missing, Failed, Rejected int
	Elapsed                                                 time.Duration
	Throughput                                              float64 // results per second
	P50, P95, P99                                           time.Duration
	ConsumedLagP99                                          time.Duration // result committed → consumed downstream
	RelayLagP50, RelayLagP99                                time.Duration // result written → broker's acknowledgement (payflow's histogram)
	// BatchMean is the mean items per group-commit flush by kind
	// (create_charge, finish_placing), from payflow's histogram, and
	// BatchSizes that histogram.
	BatchMean  map[string]float64
	BatchSizes map[string][]Bucket
	// FlushTimes is the p50 and p99 of one flush's round trip and commit,
	// by kind, from payflow's histogram.
	FlushTimes map[string][2]time.Duration
	// Database and Commits: the transactions Postgres committed in the
	// benchmark's database over the load phase, every one in that database
	// (payflow's writes, reads and relay marks, and anything else).
	Database string
	Commits  int64
	// Seconds is the load phase second by second from the first request
	// published.
	Seconds []Second
	// Setup describes the run, for the HTML report.
	Setup      string
	PeakRSSMB  float64
	RSSOf      string // whose peak RSS it is
	CeilingTPS float64
	ByMethod   map[string]int
}

// Second is one second of a run.
type Second struct {
	Results  int           // results received
	P50, P99 time.Duration // their request → result latency
	Commits  int64         // transactions committed in the database
}

// Bucket is one bucket of a histogram: the observations above the previous
// bucket's bound and at most UpTo (+Inf for the last).
type Bucket struct {
	UpTo  float64
	Count uint64
}

// CommitsPerCharge is how many transactions the database committed per
// charge over the load phase.
func (r Report) CommitsPerCharge() float64 {
	if r.Charges == 0 {
		return 0
	}
	return float64(r.Commits) / float64(r.Charges)
}

// statsSettle is how long the counters of pg_stat_database may lag the
// commits: a busy backend reports its counts at most once a second, an idle
// one within 10 s (PGSTAT_IDLE_INTERVAL). The load phase's commits are
// counted only after the setup's, and then its own, have settled this long.
const statsSettle = 11 * time.Second

// Run publishes the workload and waits for every result.
func Run(ctx context.Context, t Target, w Workload, progress io.Writer) (Report, error) {
	rep := Report{Charges: w.Charges, ByMethod: map[string]int{}}
	members := int(float64(w.Customers) * w.MemberRate)
	fmt.Fprintf(progress, "registering %d members with stored methods...\n", members)
	for i := 0; i < members; i++ {
		if err := t.RegisterMember(ctx, memberID(i)); err != nil {
			return rep, err
		}
	}

	stats, err := pgxpool.New(ctx, t.DatabaseURL)
	if err != nil {
		return rep, err
	}
	defer stats.Close()
	if err := stats.QueryRow(ctx, `SELECT current_database()`).Scan(&rep.Database); err != nil {
		return rep, err
	}

	run := uuid.NewString()[:8]
	topics := t.Topics.WithDefaults()
	// A group of its own reads every partition. Its offsets matter to
	// nobody, so they are committed in the background: with kafka-go's
	// default (CommitInterval 0), ReadMessage commits each message before
	// returning, a round trip per result that slowed the downstream
	// consumer bench stands for and cost the broker one request a charge.
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: t.Brokers, Dialer: t.Dial.Dialer(), GroupID: "bench-" + run, Topic: topics.Events,
		MaxWait: 50 * time.Millisecond, StartOffset: kafka.LastOffset, QueueCapacity: 10000, MaxBytes: 16 << 20,
		CommitInterval: time.Second})
	defer r.Close()

	type result struct {
		at       time.Time
		eventAt  time.Time
		typ, id  string
		method   string
		chargeID string
	}
	// sent[i] is when charge i was handed to the producer. It is written
	// by the publisher and read here once its result arrives; the only
	// ordering between the two goes through Kafka and payflow, which the
	// memory model does not see, so it is atomic.
	sent := make([]atomic.Int64, w.Charges)
	var firstSend time.Time
	results := make(chan result, 10000)
	rctx, stopReading := context.WithCancel(ctx)
	defer stopReading()
	go func() {
		defer close(results)
		for {
			m, err := r.ReadMessage(rctx)
			if err != nil {
				return
			}
			now := time.Now()
			var ev struct {
				ID, Type, Subject, Time string
				Data                    struct {
					Method string `json:"method"`
				} `json:"data"`
			}
			if json.Unmarshal(m.Value, &ev) != nil || !strings.HasPrefix(ev.Subject, run+"-") || !chargeResult(ev.Type) {
				continue
			}
			at, _ := time.Parse(time.RFC3339Nano, ev.Time)
			results <- result{at: now, eventAt: at, typ: ev.Type, id: ev.ID, method: ev.Data.Method, chargeID: ev.Subject}
		}
	}()
	// Wait until the reader has joined and sits at the end of the topic, and
	// the setup's commits are counted.
	time.Sleep(statsSettle)
	commitsBefore, err := xactCommits(ctx, stats)
	if err != nil {
		return rep, err
	}
	var sampled []int64 // the database's commit count each second of the load
	var sampledMu sync.Mutex
	sctx, stopSampling := context.WithCancel(ctx)
	defer stopSampling()
	go func() {
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-tick.C:
				if n, err := xactCommits(sctx, stats); err == nil {
					sampledMu.Lock()
					sampled = append(sampled, n)
					sampledMu.Unlock()
				}
			case <-sctx.Done():
				return
			}
		}
	}()

	fmt.Fprintf(progress, "publishing %d charges...\n", w.Charges)
	wr := &kafka.Writer{Addr: kafka.TCP(t.Brokers...), Topic: topics.Requests, Balancer: &kafka.Hash{},
		BatchTimeout: 2 * time.Millisecond, BatchSize: 500, RequiredAcks: kafka.RequireAll}
	if tr := t.Dial.NewTransport(); tr != nil {
		wr.Transport = tr
	}
	defer wr.Close()
	var pubErr atomic.Value
	firstSend = time.Now()
	go func() {
		batch := 500
		if w.Rate > 0 {
			batch = max(1, int(w.Rate/100)) // ten-millisecond slices
		}
		for start := 0; start < w.Charges; start += batch {
			if w.Rate > 0 {
				due := firstSend.Add(time.Duration(float64(start) / w.Rate * float64(time.Second)))
				time.Sleep(time.Until(due))
			}
			end := min(start+batch, w.Charges)
			msgs := make([]kafka.Message, 0, end-start)
			now := time.Now()
			for i := start; i < end; i++ {
				sent[i].Store(now.UnixNano())
				id := run + "-" + strconv.Itoa(i)
				msgs = append(msgs, kafka.Message{Key: []byte(id), Value: chargeEvent(w, i, id)})
			}
			if err := wr.WriteMessages(ctx, msgs...); err != nil {
				pubErr.Store(err)
				return
			}
		}
	}()

	seenEvent := map[string]bool{}
	resultOf := map[string]string{}
	var lat, lag, arrived []time.Duration
	var last time.Time
	deadline := time.After(w.Timeout)
	tick := time.NewTicker(5 * time.Second)
	defer tick.Stop()
wait:
	for len(resultOf) < w.Charges {
		select {
		case res, ok := <-results:
			if !ok {
				break wait
			}
			if seenEvent[res.id] {
				continue // a redelivered event: consumers dedupe by id
			}
			seenEvent[res.id] = true
			if _, dup := resultOf[res.chargeID]; dup {
				rep.Duplicates++
				continue
			}
			resultOf[res.chargeID] = res.typ
			i, _ := strconv.Atoi(strings.TrimPrefix(res.chargeID, run+"-"))
			lat = append(lat, res.at.Sub(time.Unix(0, sent[i].Load())))
			arrived = append(arrived, res.at.Sub(firstSend))
			if !res.eventAt.IsZero() {
				lag = append(lag, res.at.Sub(res.eventAt))
			}
			last = res.at
			switch res.typ {
			case events.TypeChargeProcessed:
				rep.ByMethod[res.method]++
			case events.TypeChargeFailed:
				rep.Failed++
			case events.TypeRejected:
				rep.Rejected++
			}
		case <-tick.C:
			fmt.Fprintf(progress, "  %d/%d results\n", len(resultOf), w.Charges)
		case <-deadline:
			break wait
		case <-ctx.Done():
			return rep, ctx.Err()
		}
	}
	if err, _ := pubErr.Load().(error); err != nil {
		return rep, fmt.Errorf("bench: publish: %w", err)
	}
	// Late duplicates would arrive shortly after: look for them.
	grace := time.After(2 * time.Second)
drain:
	for {
		select {
		case res, ok := <-results:
			if !ok {
				break drain
			}
			if !seenEvent[res.id] {
				seenEvent[res.id] = true
				if _, dup := resultOf[res.chargeID]; dup {
					rep.Duplicates++
				}
			}
		case <-grace:
			break drain
		}
	}
	stopSampling()
	if last.IsZero() {
		last = time.Now()
	}
	time.Sleep(time.Until(last.Add(statsSettle)))
	commitsAfter, err := xactCommits(ctx, stats)
	if err != nil {
		return rep, err
	}
	rep.Commits = commitsAfter - commitsBefore
	sampledMu.Lock()
	rep.Seconds = perSecond(arrived, lat, append([]int64{commitsBefore}, sampled...))
	sampledMu.Unlock()
	rep.Results = len(resultOf)
	rep.Missing = w.Charges - rep.Results
	rep.Elapsed = last.Sub(firstSend)
	if rep.Elapsed > 0 {
		rep.Throughput = float64(rep.Results) / rep.Elapsed.Seconds()
	}
	rep.P50, rep.P95, rep.P99 = pct(lat, 50), pct(lat, 95), pct(lat, 99)
	rep.ConsumedLagP99 = pct(lag, 99)
	if t.MetricsURL != "" {
		fams := scrape(ctx, t.MetricsURL)
		rep.RelayLagP50, rep.RelayLagP99 = relayLag(fams)
		rep.BatchMean, rep.BatchSizes, rep.FlushTimes = batchMean(fams), batchSizes(fams), flushTimes(fams)
	}
	rep.PeakRSSMB = peakRSSMB()

	if w.CeilingClients > 0 {
		fmt.Fprintf(progress, "measuring the Postgres ceiling (%d clients, %s)...\n", w.CeilingClients, w.CeilingDuration)
		tps, err := Ceiling(ctx, t.DatabaseURL, w.CeilingClients, w.CeilingDuration)
		if err != nil {
			return rep, err
		}
		rep.CeilingTPS = tps
	}
	return rep, nil
}

// xactCommits is the transactions committed in the connected database.
func xactCommits(ctx context.Context, pool *pgxpool.Pool) (int64, error) {
	var n int64
	err := pool.QueryRow(ctx, `SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()`).Scan(&n)
	return n, err
}

// perSecond buckets the results by the second they arrived in (arrived[i]
// since the first request published, with latency lat[i]), up to the last
// result's; commits are the database's cumulative commit counts at the
// start and each second after.
func perSecond(arrived, lat []time.Duration, commits []int64) []Second {
	n := 0
	for _, a := range arrived {
		n = max(n, int(a/time.Second)+1)
	}
	secs := make([]Second, n)
	lats := make([][]time.Duration, len(secs))
	for i, a := range arrived {
		s := int(a / time.Second)
		secs[s].Results++
		lats[s] = append(lats[s], lat[i])
	}
	for s := range secs {
		secs[s].P50, secs[s].P99 = pct(lats[s], 50), pct(lats[s], 99)
		if s+1 < len(commits) {
			secs[s].Commits = commits[s+1] - commits[s]
		}
	}
	return secs
}

// chargeResult reports whether an event of type typ is a charge request's
// one result. A settlement that follows it, when the PG simulator settles
// (as one started on its own does by default), is neither that result nor a
// duplicate of it.
func chargeResult(typ string) bool {
	switch typ {
	case events.TypeChargeProcessed, events.TypeChargeFailed, events.TypeRejected:
		return true
	}
	return false
}

func memberID(i int) string { return "bench-member-" + strconv.Itoa(i) }

func chargeEvent(w Workload, i int, chargeID string) []byte {
	cust := i % w.Customers
	c := map[string]any{"phone": phone(cust), "name": "Customer"}
	if cust < int(float64(w.Customers)*w.MemberRate) {
		c["member_id"] = memberID(cust)
	}
	b, _ := json.Marshal(map[string]any{
		"specversion": "1.0", "id": uuid.NewString(), "source": "bench", "type": events.TypeChargeRequested, "subject": chargeID,
		"datacontenttype": "application/json",
		"data": map[string]any{"merchant_id": w.Merchant, "charge_id": chargeID, "amount": 1000 + i%50000, "currency": "KRW",
			"order_name": "bench order", "customer": c},
	})
	return b
}

// phone is customer cust's mobile number: distinct and valid for the first
// 100,000,000 customers (010 and eight digits).
func phone(cust int) string {
	return fmt.Sprintf("010-%04d-%04d", cust/10000%10000, cust%10000)
}

func pct(d []time.Duration, p int) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	idx := (len(s)*p + 99) / 100
	if idx > 0 {
		idx--
	}
	return s[idx]
}

// peakRSSMB is the process's peak resident set (VmHWM).
func peakRSSMB() float64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmHWM:") {
			f := strings.Fields(line)
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb / 1024
		}
	}
	return 0
}

// Ceiling measures how many state-row + outbox-row transactions Postgres
// commits per second from clients goroutines: the work payflow must do per
// result, with nothing else around it.
func Ceiling(ctx context.Context, dsn string, clients int, d time.Duration) (float64, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return 0, err
	}
	cfg.MaxConns = int32(clients)
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return 0, err
	}
	defer pool.Close()
	if _, err := pool.Exec(ctx, `DROP TABLE IF EXISTS bench_state, bench_outbox;
		CREATE TABLE bench_state (id bigint PRIMARY KEY, state text NOT NULL, updated_at timestamptz NOT NULL DEFAULT now());
		CREATE TABLE bench_outbox (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, event_id uuid NOT NULL UNIQUE,
			key bytea NOT NULL, value bytea NOT NULL, created_at timestamptz NOT NULL DEFAULT now(), published_at timestamptz);
		INSERT INTO bench_state SELECT g, 'placing' FROM generate_series(1, 100000) g`); err != nil {
		return 0, err
	}
	defer pool.Exec(context.Background(), `DROP TABLE IF EXISTS bench_state, bench_outbox`)
	value := make([]byte, 300)
	var n atomic.Int64
	var wg sync.WaitGroup
	cctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var firstErr atomic.Value
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			for i := 0; cctx.Err() == nil; i++ {
				id := int64(c*1_000_000+i)%100000 + 1
				tx, err := pool.Begin(cctx)
				if err != nil {
					break
				}
				_, err = tx.Exec(cctx, `UPDATE bench_state SET state = 'requested', updated_at = now() WHERE id = $1`, id)
				if err == nil {
					_, err = tx.Exec(cctx, `INSERT INTO bench_outbox (event_id, key, value) VALUES ($1, $2, $3)`, uuid.New(), []byte("k"), value)
				}
				if err == nil {
					err = tx.Commit(cctx)
				} else {
					_ = tx.Rollback(context.Background())
				}
				if err != nil {
					if cctx.Err() == nil {
						firstErr.Store(err)
					}
					break
				}
				n.Add(1)
			}
		}(c)
	}
	wg.Wait()
	if err, _ := firstErr.Load().(error); err != nil {
		return 0, err
	}
	return float64(n.Load()) / d.Seconds(), nil
}

// startApart returns the first second's p99 and the highest p99 of the
// seconds after it, with that second's index (0 when the run has no
// second after its first).
func (r Report) startApart() (first, rest time.Duration, at int) {
	if len(r.Seconds) < 2 {
		return 0, 0, 0
	}
	for i, s := range r.Seconds[1:] {
		if s.Results > 0 && s.P99 > rest {
			rest, at = s.P99, i+1
		}
	}
	return r.Seconds[0].P99, rest, at
}

// Print writes the report as the table docs/benchmarks.md records.
func (r Report) Print(out io.Writer) {
	fmt.Fprintf(out, "\nresults           %d of %d (missing %d, duplicates %d, failed %d, rejected %d)\n", r.Results, r.Charges, r.Missing, r.Duplicates, r.Failed, r.Rejected)
	fmt.Fprintf(out, "by method         %v\n", r.ByMethod)
	fmt.Fprintf(out, "elapsed           %s\n", r.Elapsed.Round(time.Millisecond))
	fmt.Fprintf(out, "throughput        %.0f charges/s\n", r.Throughput)
	fmt.Fprintf(out, "latency           p50 %s  p95 %s  p99 %s (request published → result consumed)\n", r.P50.Round(time.Millisecond), r.P95.Round(time.Millisecond), r.P99.Round(time.Millisecond))
	if first, rest, at := r.startApart(); at > 0 {
		fmt.Fprintf(out, "p99 by second     first %s, then at most %s (second %d)\n", first.Round(time.Millisecond), rest.Round(time.Millisecond), at+1)
	}
	if r.RelayLagP99 > 0 {
		fmt.Fprintf(out, "relay lag         p50 %s  p99 %s (result written → broker's acknowledgement, payflow_outbox_relay_lag_seconds)\n", r.RelayLagP50.Round(time.Millisecond), r.RelayLagP99.Round(time.Millisecond))
	} else {
		fmt.Fprintf(out, "relay lag         not measured (the relay's metrics were not reachable)\n")
	}
	if len(r.BatchMean) > 0 {
		var kinds []string
		for k, m := range r.BatchMean {
			kinds = append(kinds, fmt.Sprintf("%s %.1f", k, m))
		}
		sort.Strings(kinds)
		fmt.Fprintf(out, "group commit      mean batch: %s (payflow_group_commit_batch_size)\n", strings.Join(kinds, ", "))
		var times []string
		for k, t := range r.FlushTimes {
			times = append(times, fmt.Sprintf("%s %s / %s", k, t[0].Round(100*time.Microsecond), t[1].Round(100*time.Microsecond)))
		}
		sort.Strings(times)
		if len(times) > 0 {
			fmt.Fprintf(out, "                  flush p50 / p99: %s (payflow_group_commit_seconds)\n", strings.Join(times, ", "))
		}
	} else {
		fmt.Fprintf(out, "group commit      not measured (payflow's metrics were not reachable)\n")
	}
	fmt.Fprintf(out, "postgres commits  %.2f per charge (%d in database %s over the load phase: every commit in that database, not only payflow's)\n", r.CommitsPerCharge(), r.Commits, r.Database)
	fmt.Fprintf(out, "consumed lag p99  %s (result committed → read by a downstream consumer)\n", r.ConsumedLagP99.Round(time.Millisecond))
	if r.RSSOf == "" {
		r.RSSOf = "whole process: payflow, embedded broker, PG simulator"
	}
	fmt.Fprintf(out, "peak RSS          %.0f MB (%s)\n", r.PeakRSSMB, r.RSSOf)
	if r.CeilingTPS > 0 {
		fmt.Fprintf(out, "postgres ceiling  %.0f tx/s (state row + outbox row, plain pgx loop)\n", r.CeilingTPS)
		fmt.Fprintf(out, "payflow/ceiling   %.0f%%\n", 100*r.Throughput/r.CeilingTPS)
	}
}

// scrape reads payflow's metrics; nil when they are not reachable.
func scrape(ctx context.Context, url string) map[string]*dto.MetricFamily {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		return nil
	}
	return fams
}

// batchMean is the mean size of the group commit's flushes, by kind.
func batchMean(fams map[string]*dto.MetricFamily) map[string]float64 {
	f := fams["payflow_group_commit_batch_size"]
	if f == nil {
		return nil
	}
	mean := map[string]float64{}
	for _, m := range f.Metric {
		h := m.GetHistogram()
		if h.GetSampleCount() == 0 || len(m.GetLabel()) == 0 {
			continue
		}
		mean[m.GetLabel()[0].GetValue()] = h.GetSampleSum() / float64(h.GetSampleCount())
	}
	return mean
}

// batchSizes is the group commit's batch-size histogram by kind.
func batchSizes(fams map[string]*dto.MetricFamily) map[string][]Bucket {
	f := fams["payflow_group_commit_batch_size"]
	if f == nil {
		return nil
	}
	sizes := map[string][]Bucket{}
	for _, m := range f.Metric {
		h := m.GetHistogram()
		if h.GetSampleCount() == 0 || len(m.GetLabel()) == 0 {
			continue
		}
		var bs []Bucket
		var below uint64
		for _, b := range h.GetBucket() {
			if math.IsInf(b.GetUpperBound(), 1) {
				continue // the text format lists +Inf; its count is the sample count
			}
			bs = append(bs, Bucket{UpTo: b.GetUpperBound(), Count: b.GetCumulativeCount() - below})
			below = b.GetCumulativeCount()
		}
		sizes[m.GetLabel()[0].GetValue()] = append(bs, Bucket{UpTo: math.Inf(1), Count: h.GetSampleCount() - below})
	}
	return sizes
}

// relayLag reads payflow's relay-lag histogram.
func relayLag(fams map[string]*dto.MetricFamily) (p50, p99 time.Duration) {
	f := fams["payflow_outbox_relay_lag_seconds"]
	if f == nil || len(f.Metric) == 0 {
		return 0, 0
	}
	h := f.Metric[0].GetHistogram()
	return quantile(h, 0.5), quantile(h, 0.99)
}

// flushTimes reads the group commit's flush-time histogram, by kind: the
// round trip and commit of one flush.
func flushTimes(fams map[string]*dto.MetricFamily) map[string][2]time.Duration {
	f := fams["payflow_group_commit_seconds"]
	if f == nil {
		return nil
	}
	out := map[string][2]time.Duration{}
	for _, m := range f.Metric {
		h := m.GetHistogram()
		if h.GetSampleCount() == 0 || len(m.GetLabel()) == 0 {
			continue
		}
		out[m.GetLabel()[0].GetValue()] = [2]time.Duration{quantile(h, 0.5), quantile(h, 0.99)}
	}
	return out
}

// quantile estimates a quantile of a seconds histogram by linear
// interpolation within buckets, as Prometheus's histogram_quantile does.
func quantile(h *dto.Histogram, p float64) time.Duration {
	total := float64(h.GetSampleCount())
	rank, prevUpper, prevCount := p*total, 0.0, 0.0
	for _, b := range h.GetBucket() {
		c := float64(b.GetCumulativeCount())
		if c >= rank {
			frac := 0.0
			if c > prevCount {
				frac = (rank - prevCount) / (c - prevCount)
			}
			return time.Duration((prevUpper + frac*(b.GetUpperBound()-prevUpper)) * float64(time.Second))
		}
		prevUpper, prevCount = b.GetUpperBound(), c
	}
	return time.Duration(prevUpper * float64(time.Second))
}
