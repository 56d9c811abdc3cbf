package top

import (
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	tea "charm.land/bubbletea/v2"
)

// scripted serves the given metrics texts one per request, then the last
// again.
func scripted(t *testing.T, texts ...string) *httptest.Server {
	var mu sync.Mutex
	n := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/metrics" {
			http.NotFound(w, r)
			return
		}
		mu.Lock()
		text := texts[min(n, len(texts)-1)]
		n++
		mu.Unlock()
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		w.Write([]byte(text))
	}))
	t.Cleanup(srv.Close)
	return srv
}

// fakeClock advances a second each time it is read: once per round.
func fakeClock() func() time.Time {
	var mu sync.Mutex
	now := t0
	return func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		now = now.Add(time.Second)
		return now
	}
}

// step runs cmd, the model's command, and feeds its message back; a tick
// is answered at once, so that the model scrapes again without waiting.
func step(t *testing.T, m tea.Model, cmd tea.Cmd) tea.Model {
	t.Helper()
	msg := cmd()
	if _, ok := msg.(scrapedMsg); !ok {
		t.Fatalf("command gave %T, want scrapedMsg", msg)
	}
	m, next := m.Update(msg)
	if next == nil {
		t.Fatal("no tick scheduled after a scrape")
	}
	return m
}

// The model scrapes a busy server and a dead one twice and draws the rates
// between the scrapes, the busy server's shard queue as over its limit,
// and the dead one as down.
func TestModelScriptedScrapes(t *testing.T) {
	busy := after
	busy.shardQueue = 4000
	live := scripted(t, before.text(), busy.text())
	dead := httptest.NewServer(http.NotFoundHandler())
	deadAddr := dead.Listener.Addr().String()
	dead.Close() // nothing listens there now: connection refused

	liveAddr := live.Listener.Addr().String()
	cfg := Config{Addrs: []string{liveAddr, deadAddr}, Every: time.Second, Now: fakeClock()}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	var m tea.Model = NewModel(cfg)
	if got := m.(Model).Render(Styles{}); !strings.HasPrefix(got, "switchboard top: reading [") {
		t.Errorf("before the first scrape: %q, want it to say it is reading", got)
	}
	m = step(t, m, m.Init())
	first := m.(Model).Render(Styles{})
	if !strings.Contains(first, "rates after the next scrape") {
		t.Errorf("first frame does not say rates come next:\n%s", first)
	}
	m, cmd := m.Update(tickMsg(t0))
	if cmd == nil {
		t.Fatal("a tick did not scrape")
	}
	m = step(t, m, cmd)

	screen := m.(Model).Render(Styles{})
	if strings.Contains(screen, "rates after the next scrape") {
		t.Errorf("the second frame still says rates come next:\n%s", screen)
	}
	line := func(label string) string {
		for l := range strings.SplitSeq(screen, "\n") {
			if strings.HasPrefix(l, label) {
				return strings.Join(strings.Fields(strings.TrimPrefix(l, label)), " ")
			}
		}
		t.Fatalf("no %q line in:\n%s", label, screen)
		return ""
	}
	// Columns: cluster, live, dead; the rounds are a second apart.
	tests := []struct{ label, want string }{
		{"state ", "1 of 2 down ! up down !"},
		{"connections", "12 / 100 12 / 100 –"},
		{"  logged in", "9 9 –"},
		{"logins/s", "20.0 20.0 –"},
		{"messages in/s", "200 200 –"},
		{"messages out/s", "140 140 –"},
		{"send→ACCEPT p99", "9.4ms 9.4ms –"},
		{"shard queue (max)", "4000 / 4096 ! 4000 / 4096 ! –"},
		{"commit queue", "40 / 4096 40 / 4096 –"},
		{"syncs/message", "0.50 0.50 –"},
		{"disk free", "5.0 GiB 50% 5.0 GiB 50% –"},
	}
	for _, tt := range tests {
		if got := line(tt.label); got != tt.want {
			t.Errorf("%s: %q, want %q", tt.label, got, tt.want)
		}
	}
	if !strings.Contains(screen, "down "+deadAddr+": ") {
		t.Errorf("the dead server's reason is missing:\n%s", screen)
	}

	// In colour, the over-limit queue is drawn in the Over style and the
	// queue under its limit is not.
	coloured := m.(Model).Render(Colours())
	over := Colours().over.Render("4000 / 4096 " + Mark)
	if !strings.Contains(coloured, over) {
		t.Errorf("the full shard queue is not highlighted: want %q in\n%q", over, coloured)
	}
	if strings.Contains(coloured, Colours().over.Render("40 / 4096")) {
		t.Error("the commit queue, 1% full, is highlighted")
	}

	if !m.(Model).View().AltScreen {
		t.Error("the live view is not drawn on the alternate screen")
	}
	for _, k := range []tea.KeyPressMsg{{Code: 'q', Text: "q"}, {Code: tea.KeyEscape}, {Code: 'c', Mod: tea.ModCtrl}} {
		_, cmd := m.Update(k)
		if cmd == nil {
			t.Errorf("%s does not quit", k)
		} else if _, ok := cmd().(tea.QuitMsg); !ok {
			t.Errorf("%s does not quit", k)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	c := Config{Addrs: []string{"a"}}
	if err := c.Validate(); err != nil || c.Every != DefaultEvery {
		t.Errorf("Validate() = %v, every %v; want nil, %v", err, c.Every, DefaultEvery)
	}
	bad := Config{Addrs: make([]string, MaxServers+1), Every: time.Millisecond}
	err := bad.Validate()
	for _, want := range []string{"at most 16", "an empty server address", "at least 100ms"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v; want it to say %q", err, want)
		}
	}
}

// A server that answers an error, an answer over MaxBody, something that is
// not the text format, or nothing within the timeout is down with the
// reason (TestModelScriptedScrapes shows the others still read).
func TestScrapeFailures(t *testing.T) {
	handlers := map[string]http.HandlerFunc{
		"404 Not Found": func(w http.ResponseWriter, r *http.Request) { http.NotFound(w, r) },
		"over 8 MiB": func(w http.ResponseWriter, r *http.Request) {
			w.Write([]byte("# " + strings.Repeat("x", MaxBody) + "\n"))
		},
		"parsing metrics": func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("switchboard_connections{ 1\n")) },
		"Timeout exceeded": func(w http.ResponseWriter, r *http.Request) {
			<-r.Context().Done() // answers nothing until top gives up
		},
		"": func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(before.text())) },
	}
	var addrs, wants []string
	for want, h := range handlers {
		srv := httptest.NewServer(h)
		t.Cleanup(srv.Close)
		addrs = append(addrs, srv.Listener.Addr().String())
		wants = append(wants, want)
	}
	// The hanging server alone gets a short timeout: the 8 MiB answer may
	// take longer than that under the race detector.
	got := make([]Sample, len(addrs))
	for i := range addrs {
		timeout := 10 * time.Second
		if wants[i] == "Timeout exceeded" {
			timeout = 100 * time.Millisecond
		}
		got[i] = Scraper{Client: &http.Client{Timeout: timeout}}.ScrapeAll(t.Context(), addrs[i:i+1])[0]
	}
	for i, got := range got {
		switch {
		case wants[i] == "" && got.Err != nil:
			t.Errorf("the good server: %v", got.Err)
		case wants[i] != "" && (got.Err == nil || !strings.Contains(got.Err.Error(), wants[i])):
			t.Errorf("want an error saying %q, got %v", wants[i], got.Err)
		}
	}
}

// A server or URL is read at its /metrics, or at the URL as given, http
// or https.
func TestMetricsURL(t *testing.T) {
	for addr, want := range map[string]string{
		"10.0.0.1:9070":                   "http://10.0.0.1:9070/metrics",
		"http://10.0.0.1:9070/m":          "http://10.0.0.1:9070/m",
		"https://top.example:443/metrics": "https://top.example:443/metrics",
	} {
		if got := metricsURL(addr); got != want {
			t.Errorf("metricsURL(%q) = %q, want %q", addr, got, want)
		}
	}
}

// Every answer is closed once read, an error's too: top against a wrong
// address, refreshed every second for hours, keeps no connection open per
// round.
func TestScrapeClosesAnswers(t *testing.T) {
	var mu sync.Mutex
	open := 0
	srv := httptest.NewUnstartedServer(http.NotFoundHandler())
	srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		mu.Lock()
		defer mu.Unlock()
		switch st {
		case http.StateNew:
			open++
		case http.StateClosed, http.StateHijacked:
			open--
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	s := Scraper{Client: &http.Client{Timeout: time.Minute}} // no timeout closes them meanwhile
	for range 5 {
		if got := s.ScrapeAll(t.Context(), []string{srv.Listener.Addr().String()})[0]; got.Err == nil {
			t.Fatal("a 404 read as metrics")
		}
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		mu.Lock()
		n := open
		mu.Unlock()
		if n <= 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d connections open after 5 rounds, want at most 1", n)
		}
	}
}
