package bench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// serverMetrics is what the generator reads from the server's Prometheus
// endpoint. Zero values mean the metric was absent.
type serverMetrics struct {
	RSS       uint64  // process_resident_memory_bytes
	HeapInuse uint64  // go_memstats_heap_inuse_bytes
	CPU       float64 // process_cpu_seconds_total
	Conns     int     // switchboard_connections
	Closes    map[string]uint64
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
			if j < 0 {
				continue
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
