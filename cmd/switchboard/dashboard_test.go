package main

import (
	"encoding/json"
	"net/http"
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"switchboard/internal/testutil"
)

// metricRef finds the metric names a PromQL expression refers to: ours,
// the process collector's and the Go collector's. Function names,
// keywords and labels have none of these prefixes.
var metricRef = regexp.MustCompile(`\b(?:switchboard|process|go)_[a-zA-Z0-9_]*[a-zA-Z0-9]\b`)

// prometheusOwn are series Prometheus makes itself for every target.
var prometheusOwn = regexp.MustCompile(`\bup\{`)

// servedMetrics returns the metric names a running server serves at
// /metrics, after a connection has come and gone.
func servedMetrics(t *testing.T) map[string]bool {
	t.Helper()
	data := t.TempDir()
	n := startNode(t, data)
	cl := dialNode(t, n, data, 7)
	cl.Close()
	var names map[string]bool
	testutil.Eventually(t, 10*time.Second, "switchboard_closes_total to be served", func() bool {
		resp, err := http.Get("http://" + n.AdminAddr().String() + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		names = map[string]bool{}
		for series := range parseSeries(t, resp.Body) {
			name, _, _ := strings.Cut(series, "{")
			names[name] = true
			// A histogram or summary is referred to by its base name too.
			for _, suffix := range []string{"_bucket", "_sum", "_count"} {
				if base, ok := strings.CutSuffix(name, suffix); ok {
					names[base] = true
				}
			}
		}
		return names["switchboard_closes_total"]
	})
	return names
}

// dashboardExprs returns every PromQL expression of a Grafana dashboard:
// the panels' targets and the template variables' queries.
func dashboardExprs(t *testing.T, path string) []string {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Title  string `json:"title"`
		Panels []struct {
			Type    string `json:"type"`
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
		Templating struct {
			List []struct {
				Name       string `json:"name"`
				Definition string `json:"definition"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	var exprs []string
	graphs := 0
	for _, p := range d.Panels {
		if p.Type == "row" {
			continue
		}
		graphs++
		if len(p.Targets) == 0 {
			t.Errorf("%s: panel %q has no query", path, p.Title)
		}
		for _, tg := range p.Targets {
			exprs = append(exprs, tg.Expr)
		}
	}
	if graphs < 10 {
		t.Errorf("%s: %d panels; the dashboard was not read", path, graphs)
	}
	for _, v := range d.Templating.List {
		if v.Definition != "" {
			exprs = append(exprs, v.Definition)
		}
	}
	return exprs
}

// alertRule is one rule of docs/alerts.yml.
type alertRule struct {
	name, expr, severity, summary string
}

// alertRules reads the rules of a Prometheus rule file written in the
// layout docs/alerts.yml keeps: each rule starts with "- alert: Name", and
// its expr, severity and summary are each on one line.
func alertRules(t *testing.T, path string) []alertRule {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var rules []alertRule
	for i, line := range strings.Split(string(raw), "\n") {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "#") || line == "" {
			continue
		}
		key, value, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		value = strings.Trim(strings.TrimSpace(value), `"`)
		if key == "- alert" {
			rules = append(rules, alertRule{name: value})
			continue
		}
		if len(rules) == 0 {
			continue
		}
		r := &rules[len(rules)-1]
		switch key {
		case "expr":
			if value == "" || value == "|" || value == ">" {
				t.Fatalf("%s:%d: keep each expr on one line (this test reads them so)", path, i+1)
			}
			r.expr = value
		case "severity":
			r.severity = value
		case "summary":
			r.summary = value
		}
	}
	if len(rules) < 5 {
		t.Fatalf("%s: %d rules read; the file was not read", path, len(rules))
	}
	return rules
}

// TestDashboardAndAlertsUseServedMetrics: every metric that
// docs/grafana-dashboard.json and docs/alerts.yml refer to is served by a
// running server's /metrics, each query refers to at least one, and each
// alert has a severity and a summary.
func TestDashboardAndAlertsUseServedMetrics(t *testing.T) {
	served := servedMetrics(t)
	check := func(where, expr string, allowUp bool) {
		refs := metricRef.FindAllString(expr, -1)
		if len(refs) == 0 && !(allowUp && prometheusOwn.MatchString(expr)) {
			t.Errorf("%s: %q refers to no metric the server serves", where, expr)
		}
		for _, m := range refs {
			if !served[m] {
				t.Errorf("%s: %s is not served by /metrics (in %q)", where, m, expr)
			}
		}
	}
	for _, e := range dashboardExprs(t, "../../docs/grafana-dashboard.json") {
		check("docs/grafana-dashboard.json", e, false)
	}
	for _, r := range alertRules(t, "../../docs/alerts.yml") {
		check("docs/alerts.yml "+r.name, r.expr, true)
		if r.severity == "" || r.summary == "" {
			t.Errorf("docs/alerts.yml %s: severity %q, summary %q: both are required", r.name, r.severity, r.summary)
		}
	}
	if t.Failed() {
		var names []string
		for n := range served {
			names = append(names, n)
		}
		sort.Strings(names)
		t.Logf("served: %s", strings.Join(names, " "))
	}
}
