package top

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// MaxBody is the most a /metrics answer may hold. A server's is about
// 40 KiB (its families are fixed and its only labels are bounded: reasons,
// causes, states and worker indexes), so 8 MiB is room for far more
// workers while a wrong address cannot make top read without end.
const MaxBody = 8 << 20

// ErrBodyTooLarge is a /metrics answer over MaxBody.
var ErrBodyTooLarge = errors.New("top: metrics answer over 8 MiB")

// Sample is one scrape of one server. Err non-nil means the server did not
// answer, or answered something that is not Prometheus' text format; the
// metrics are then nil.
type Sample struct {
	Addr string
	At   time.Time
	Err  error

	metrics map[string]*dto.MetricFamily
}

// parse reads Prometheus' text exposition format.
func parse(r io.Reader) (map[string]*dto.MetricFamily, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	mf, err := p.TextToMetricFamilies(r)
	if err != nil {
		return nil, fmt.Errorf("parsing metrics: %w", err)
	}
	return mf, nil
}

// newSample returns a sample of addr taken at at from a metrics text; a
// test's scripted scrape, or a file saved from a server.
func newSample(addr string, at time.Time, text string) Sample {
	mf, err := parse(strings.NewReader(text))
	return Sample{Addr: addr, At: at, Err: err, metrics: mf}
}

// Scraper reads servers' metrics. Its zero value is not usable: set Client.
type Scraper struct {
	// Client does the GETs; its Timeout bounds each scrape, so that a
	// server that accepts and never answers shows as down.
	Client *http.Client
	// Now stamps samples; nil means time.Now. Tests pass a fake clock so
	// that rates come out exact.
	Now func() time.Time
}

// metricsURL is the metrics address of addr: addr itself when it is a URL,
// otherwise http://addr/metrics.
func metricsURL(addr string) string {
	if strings.HasPrefix(addr, "http://") || strings.HasPrefix(addr, "https://") {
		return addr
	}
	return "http://" + addr + "/metrics"
}

func (s Scraper) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// ScrapeAll reads every server at once and returns their samples in the
// order of addrs, all stamped with the round's start. It never fails: a
// server's error is carried in its sample. It returns when the slowest has
// answered or timed out.
func (s Scraper) ScrapeAll(ctx context.Context, addrs []string) []Sample {
	out := make([]Sample, len(addrs))
	at := s.now()
	var wg sync.WaitGroup
	for i, a := range addrs {
		wg.Go(func() {
			mf, err := s.get(ctx, a)
			out[i] = Sample{Addr: a, At: at, Err: err, metrics: mf}
		})
	}
	wg.Wait()
	return out
}

func (s Scraper) get(ctx context.Context, addr string) (map[string]*dto.MetricFamily, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, metricsURL(addr), nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "text/plain;version=0.0.4")
	resp, err := s.Client.Do(req)
	if err != nil {
		return nil, err // names the method and the URL
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", metricsURL(addr), resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxBody+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", metricsURL(addr), err)
	}
	if len(body) > MaxBody {
		return nil, ErrBodyTooLarge
	}
	return parse(bytes.NewReader(body))
}

// sum returns the sum of every series of the counter, gauge or untyped
// family name, and false when the family is absent.
func (s Sample) sum(name string) (float64, bool) {
	mf := s.metrics[name]
	if mf == nil {
		return 0, false
	}
	var v float64
	for _, m := range mf.GetMetric() {
		v += value(m)
	}
	return v, true
}

// max returns the largest series of the family name, and false when the
// family is absent or has no series.
func (s Sample) max(name string) (float64, bool) {
	mf := s.metrics[name]
	if mf == nil || len(mf.GetMetric()) == 0 {
		return 0, false
	}
	v := value(mf.GetMetric()[0])
	for _, m := range mf.GetMetric()[1:] {
		v = max(v, value(m))
	}
	return v, true
}

// labelled returns the series of family name whose label is val.
func (s Sample) labelled(name, label, val string) (float64, bool) {
	mf := s.metrics[name]
	if mf == nil {
		return 0, false
	}
	for _, m := range mf.GetMetric() {
		for _, lp := range m.GetLabel() {
			if lp.GetName() == label && lp.GetValue() == val {
				return value(m), true
			}
		}
	}
	return 0, false
}

// histogram returns the cumulative buckets of the histogram family name,
// summed over its series, ending with +Inf; nil when it is absent.
func (s Sample) histogram(name string) []bucket {
	mf := s.metrics[name]
	if mf == nil || mf.GetType() != dto.MetricType_HISTOGRAM {
		return nil
	}
	var out []bucket
	for _, m := range mf.GetMetric() {
		h := m.GetHistogram()
		bs := make([]bucket, 0, len(h.GetBucket())+1)
		for _, b := range h.GetBucket() {
			bs = append(bs, bucket{Le: b.GetUpperBound(), Count: float64(b.GetCumulativeCount())})
		}
		bs = append(bs, bucket{Le: inf, Count: float64(h.GetSampleCount())})
		out = addBuckets(out, bs)
	}
	return out
}

func value(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.GetCounter().GetValue()
	case m.Gauge != nil:
		return m.GetGauge().GetValue()
	case m.Untyped != nil:
		return m.GetUntyped().GetValue()
	}
	return 0
}
