package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// serverMetrics is what the generator reads from the server's Prometheus
// endpoint. Zero values mean the metric was absent.
type serverMetrics struct {
	RSS       uint64  // process_resident_memory_bytes
	HeapInuse uint64  // go_memstats_heap_inuse_bytes
	CPU       float64 // process_cpu_seconds_total
	Conns     int     // switchboard_connections
	Procs     int     // go_sched_gomaxprocs_threads: the Go processors it runs on now (serve tunes them to the load)
	Closes    map[string]uint64
	// Syncs is switchboard_store_syncs_total: the store's fsyncs, one per
	// durable group commit, summed over its series. HasSyncs says whether
	// the counter was there at all: a server built before it has none,
	// and its syncs are "not measured", not zero.
	Syncs    float64
	HasSyncs bool
	// Each is, in a sum over several servers, each server's figures in
	// --addr's order (their Each is nil); nil for one server's.
	Each []serverMetrics
}

// add adds o's figures to m: the servers of a run are separate
// processes, so the run's memory, CPU and connections are their sums.
func (m *serverMetrics) add(o serverMetrics) {
	m.RSS += o.RSS
	m.HeapInuse += o.HeapInuse
	m.CPU += o.CPU
	m.Conns += o.Conns
	m.Procs += o.Procs
	m.Syncs += o.Syncs
	for k, v := range o.Closes {
		if m.Closes == nil {
			m.Closes = map[string]uint64{}
		}
		m.Closes[k] += v
	}
}

// scrapers reads the endpoints of every server of a run at once.
type scrapers struct {
	addrs []string   // the servers, for notes
	each  []*scraper // one per server, in addrs' order; nil: the run scrapes none
}

func newScrapers(ts []target) scrapers {
	var s scrapers
	for _, t := range ts {
		s.addrs = append(s.addrs, t.addr)
		if t.metrics != "" {
			s.each = append(s.each, newScraper(t.metrics))
		}
	}
	if len(s.each) != len(ts) {
		s.each = nil // Config.targets gives every server an endpoint or none
	}
	return s
}

// scrape reads every server's endpoint concurrently (so the figures are
// of one moment) and returns their sum and each server's figures. It
// fails when any server does not answer: a sum short of a server would
// pass for the whole.
func (s scrapers) scrape(ctx context.Context) (sum serverMetrics, each []serverMetrics, err error) {
	if len(s.each) == 0 {
		return serverMetrics{}, nil, errors.New("no metrics endpoint given")
	}
	each = make([]serverMetrics, len(s.each))
	errs := make([]error, len(s.each))
	var wg sync.WaitGroup
	for i, sc := range s.each {
		wg.Add(1)
		go func() {
			defer wg.Done()
			each[i], errs[i] = sc.scrape(ctx)
			if errs[i] != nil && len(s.each) > 1 {
				errs[i] = fmt.Errorf("server %s: %w", s.addrs[i], errs[i])
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return serverMetrics{}, nil, err
	}
	sum.HasSyncs = true
	for _, m := range each {
		sum.add(m)
		// A sum short of a server's syncs would pass for all of them.
		sum.HasSyncs = sum.HasSyncs && m.HasSyncs
	}
	if len(each) > 1 {
		sum.Each = each
	}
	return sum, each, nil
}

// scraper reads the server's /metrics. A nil *scraper (no --metrics) reads
// nothing and says so.
type scraper struct {
	url    string
	client *http.Client
}

func newScraper(url string) *scraper {
	if url == "" {
		return nil
	}
	// 2 s: the endpoint answers in milliseconds; a server too busy to answer
	// within 2 s is itself the finding, and the run must not stall on it.
	return &scraper{url: url, client: &http.Client{Timeout: 2 * time.Second}}
}

// scrape fetches and parses the endpoint once.
func (s *scraper) scrape(ctx context.Context) (serverMetrics, error) {
	if s == nil {
		return serverMetrics{}, fmt.Errorf("no metrics endpoint given")
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.url, nil)
	if err != nil {
		return serverMetrics{}, err
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return serverMetrics{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return serverMetrics{}, fmt.Errorf("%s: %s", s.url, resp.Status)
	}
	return parseMetrics(resp.Body)
}

// parseMetrics reads the few samples the generator needs from Prometheus'
// text format: "name{labels} value [timestamp]" lines, # comments.
func parseMetrics(r io.Reader) (serverMetrics, error) {
	var m serverMetrics
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		name, rest, _ := strings.Cut(line, " ")
		labels := ""
		if i := strings.IndexByte(name, '{'); i >= 0 {
			// Label values may hold spaces; take the value after the closing brace.
			j := strings.LastIndexByte(line, '}')
			if j < i {
				continue // no closing brace after the opening one: not a sample
			}
			name, labels, rest = line[:i], line[i+1:j], strings.TrimSpace(line[j+1:])
		}
		valText, _, _ := strings.Cut(strings.TrimSpace(rest), " ")
		v, err := strconv.ParseFloat(valText, 64)
		if err != nil {
			continue
		}
		switch name {
		case "process_resident_memory_bytes":
			m.RSS = uint64(v)
		case "go_memstats_heap_inuse_bytes":
			m.HeapInuse = uint64(v)
		case "process_cpu_seconds_total":
			m.CPU = v
		case "switchboard_connections":
			m.Conns = int(v)
		case "go_sched_gomaxprocs_threads":
			m.Procs = int(v)
		case "switchboard_store_syncs_total":
			m.Syncs += v // labelled series, if any, add up
			m.HasSyncs = true
		case "switchboard_closes_total":
			if _, reason, ok := strings.Cut(labels, `reason="`); ok {
				reason, _, _ = strings.Cut(reason, `"`)
				if m.Closes == nil {
					m.Closes = map[string]uint64{}
				}
				m.Closes[reason] = uint64(v)
			}
		}
	}
	return m, sc.Err()
}
