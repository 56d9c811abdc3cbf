package node

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"switchboard/protocol"
)

var update = flag.Bool("update", false, "rewrite docs/CONFIG.md's generated tables")

// joined returns the errors err joins (err itself when it joins none).
func joined(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	if err == nil {
		return nil
	}
	return []error{err}
}

// TestValidateCrossPackage: each limit that must agree across packages is
// reported, naming every setting involved, when each package's own check
// passes; several problems come back at once.
func TestValidateCrossPackage(t *testing.T) {
	tests := []struct {
		name  string
		set   func(*Config)
		wants []string // substrings, one per expected problem
	}{
		{name: "defaults", set: func(*Config) {}},
		{
			// The case of issue 11: a legal 200 KiB body with the default
			// window and outbound cap.
			name: "200KiB bodies overflow the outbound cap",
			set: func(c *Config) {
				c.Gateway.MaxBody, c.Gateway.MaxFrame = 200<<10, 201<<10
			},
			wants: []string{"gateway.outbound-cap (--outbound-cap) 256KiB cannot hold a full delivery window: delivery.window-bytes (--window-bytes) 128KiB"},
		},
		{
			name:  "a max-body SEND does not fit max-frame",
			set:   func(c *Config) { c.Gateway.MaxBody, c.Gateway.MaxFrame = 64<<10, 64<<10+10 },
			wants: []string{"gateway.max-frame (--max-frame)"},
		},
		{
			name:  "the record does not fit a stored value",
			set:   func(c *Config) { c.Storage.MaxValueBytes = 64 << 10 },
			wants: []string{"storage.max-value-bytes (--max-value-bytes) 64KiB is below the record of a largest message (gateway.max-body (--max-body) 64KiB + 41 bytes"},
		},
		{
			name:  "a mailbox and a sender quota below one message",
			set:   func(c *Config) { c.Storage.MaxMailboxBytes, c.Storage.MaxSenderPendingBytes = 32<<10, 16<<10 },
			wants: []string{"storage.mailbox-max-bytes (--mailbox-max-bytes) 32KiB", "storage.sender-max-bytes (--sender-max-bytes) 16KiB"},
		},
		{
			name:  "two listeners on one address",
			set:   func(c *Config) { c.Gateway.Addr, c.Metrics = "127.0.0.1:7070", "127.0.0.1:7070" },
			wants: []string{"gateway.listen (--listen) and metrics (--metrics) are both 127.0.0.1:7070"},
		},
		{
			name: "several at once",
			set: func(c *Config) {
				c.Gateway.MaxBody, c.Gateway.MaxFrame = 200<<10, 200<<10+1
				c.Storage.MaxValueBytes = 100 << 10
				c.Pprof = c.Metrics
			},
			wants: []string{"gateway.outbound-cap (--outbound-cap)", "gateway.max-frame (--max-frame)", "storage.max-value-bytes (--max-value-bytes)", "metrics (--metrics) and pprof (--pprof)"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Default()
			c.Transport = TransportPlain // frames past a Noise transport message's
			tt.set(&c)
			// Each package alone accepts its part: only the node sees it.
			d := c.WithDefaults()
			g := d.Gateway
			g.Keys = placeholderKeys
			if err := errors.Join(d.Storage.Validate(), d.Delivery.Validate(), g.Validate()); err != nil {
				t.Fatalf("a package refuses its own config, so this is no cross-package case: %v", err)
			}
			err := c.Validate()
			errs := joined(err)
			if len(errs) != len(tt.wants) {
				t.Fatalf("Validate: %d problems, want %d:\n%v", len(errs), len(tt.wants), err)
			}
			for _, w := range tt.wants {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate does not say %q:\n%v", w, err)
				}
			}
		})
	}
}

// TestValidateNamesSettings: a package's own errors, which name Go
// fields, come back naming the setting and saying its flag where the
// field was, all at once.
func TestValidateNamesSettings(t *testing.T) {
	c := Default()
	c.Gateway.OutboundCap = 100
	c.Delivery.Window = -1
	c.Storage.RelaxedDelay = 2 * time.Second
	c.LogLevel = "loud"
	err := c.Validate()
	for _, w := range []string{
		"gateway.outbound-cap (--outbound-cap): --outbound-cap 100 must be at least 4096",
		"delivery.window (--window): --window -1 must be positive",
		"storage.relaxed-delay (--relaxed-delay): --relaxed-delay 2s is over 1s",
		`log (--log): "loud" is not a log level`,
	} {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("Validate does not say %q:\n%v", w, err)
		}
	}
	if n := len(joined(err)); n < 4 {
		t.Errorf("Validate reported %d problems, want at least 4:\n%v", n, err)
	}
}

// TestClusterSettingsNeedAName: cluster-node, cluster-nodes or
// cluster-nats without cluster-name are refused, not ignored: a node that
// lost its name would start alone and serve every user. With the name, or
// with none of them, the configuration validates.
func TestClusterSettingsNeedAName(t *testing.T) {
	nodes := []string{"--cluster-nodes", "1=127.0.0.1:7071/127.0.0.1:7171/127.0.0.1:7271"}
	for _, args := range [][]string{
		{"--cluster-node", "1"},
		nodes,
		{"--cluster-nats", "nats://127.0.0.1:4222"},
	} {
		c, err := load(t, args, nil)
		if err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		if err := c.WithDefaults().Validate(); err == nil || !strings.Contains(err.Error(), "without cluster-name") {
			t.Errorf("%v alone: %v, want refused for the missing cluster-name", args, err)
		}
	}
	c, err := load(t, append([]string{"--cluster-name", "x", "--cluster-node", "1", "--data", t.TempDir()}, nodes...), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.WithDefaults().Validate(); err != nil {
		t.Errorf("a named node: %v", err)
	}
	if err := Default().WithDefaults().Validate(); err != nil {
		t.Errorf("no cluster settings: %v", err)
	}
}

// load parses args with the settings' flags and loads with environ.
func load(t *testing.T, args, environ []string) (Config, error) {
	t.Helper()
	fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
	Flags(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	return Load(fs, environ)
}

// TestLoadPrecedence: a flag beats the environment, which beats the
// file, which beats the default; units are read as written.
func TestLoadPrecedence(t *testing.T) {
	path := filepath.Join(t.TempDir(), "switchboard.toml")
	file := `data = "/srv/from-file"
[gateway]
outbound-cap = "512KiB"
rate = 50
max-body = "32KiB"
no-compression = true
[storage]
ttl = "7d"
min-free = -1
`
	if err := os.WriteFile(path, []byte(file), 0o600); err != nil {
		t.Fatal(err)
	}
	env := []string{"SWITCHBOARD_CONFIG=" + path, "SWITCHBOARD_RATE=70", "SWITCHBOARD_MAX_BODY=16KiB", "SWITCHBOARD_TEST_LOG=1", "HOME=/root"}
	c, err := load(t, []string{"--max-body", "8KiB", "--relaxed-delay=-1ns"}, env)
	if err != nil {
		t.Fatal(err)
	}
	got := []any{c.Data, c.Gateway.OutboundCap, c.Gateway.RateLimit, c.Gateway.MaxBody, c.Gateway.DisableCompression, c.Storage.MessageTTL, c.Storage.MinFreeBytes, c.Storage.RelaxedDelay, c.Metrics}
	want := []any{"/srv/from-file", 512 << 10, 70, 8 << 10, true, 7 * 24 * time.Hour, int64(-1), -time.Nanosecond, "127.0.0.1:9070"}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("setting %d = %v, want %v", i, got[i], want[i])
		}
	}
}

// TestLoadRejects: an unknown key in the file and bad values are errors,
// every bad value at once; an empty table is not an unknown key.
func TestLoadRejects(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bad.toml")
	os.WriteFile(path, []byte("[gateway]\noutbund-cap = 1\n"), 0o600)
	if _, err := load(t, []string{"--config", path}, nil); err == nil || !strings.Contains(err.Error(), "unknown settings gateway.outbund-cap") {
		t.Fatalf("unknown key: %v", err)
	}
	// A table with nothing in it is no setting, known or not.
	os.WriteFile(path, []byte("[cluster]\n\n[gateway]\nloops = 3\n"), 0o600)
	if c, err := load(t, []string{"--config", path}, nil); err != nil || c.Gateway.Loops != 3 {
		t.Fatalf("an empty [cluster] table: %v (loops %d), want the file read", err, c.Gateway.Loops)
	}
	_, err := load(t, []string{"--outbound-cap", "12 parsecs", "--ttl", "soon"}, []string{"SWITCHBOARD_LOOPS=many"})
	for _, w := range []string{"gateway.outbound-cap (--outbound-cap, SWITCHBOARD_OUTBOUND_CAP)", "storage.ttl (--ttl", "gateway.loops (--loops, SWITCHBOARD_LOOPS)"} {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("bad values: %v, want it to name %s", err, w)
		}
	}
}

// TestPrintRoundTrip: the printed configuration loads back to the same
// configuration, setting by setting, and changed values survive.
func TestPrintRoundTrip(t *testing.T) {
	c, err := load(t, []string{"--max-body", "8KiB", "--ttl", "36h", "--no-compression", "--pprof", "127.0.0.1:6060", "--min-free", "-1"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := Print(&out, c); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "printed.toml")
	os.WriteFile(path, out.Bytes(), 0o600)
	back, err := load(t, []string{"--config", path}, nil)
	if err != nil {
		t.Fatalf("loading the printed file: %v\n%s", err, out.String())
	}
	c, back = c.WithDefaults(), back.WithDefaults()
	for _, s := range Settings() {
		if a, b := s.Get(&c), s.Get(&back); a != b {
			t.Errorf("%s: printed %q, loaded back %q", s.Key, a, b)
		}
	}
	if back.Gateway.MaxBody != 8<<10 || back.Storage.MessageTTL != 36*time.Hour || !back.Gateway.DisableCompression || back.Pprof != "127.0.0.1:6060" {
		t.Errorf("changed values lost: %+v", back.Gateway)
	}
	if !strings.Contains(out.String(), "outbound-cap = \"256KiB\"") || !strings.Contains(out.String(), "\n[gateway]\n") {
		t.Errorf("printed file lacks human units or sections:\n%s", out.String())
	}
}

// TestPrintLeavesDerivedUnset: a default worked out from other settings
// or from the machine is printed commented out, so that a file edited
// where the documentation says derives it again: rate-burst follows an
// edited rate, and the frame and body limits follow an edited transport.
// A setting given keeps its value.
func TestPrintLeavesDerivedUnset(t *testing.T) {
	c, err := load(t, []string{"--loops", "3"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := Print(&out, c); err != nil {
		t.Fatal(err)
	}
	text := out.String()
	for _, want := range []string{"\n# rate-burst = 2000 ", "\n# max-frame = \"65455\" ", "\n# max-body = \"64431\" ", "\n# shards = ", "\nloops = 3 ", "\nrate = 1000 ", "\noutbound-cap = \"256KiB\" "} {
		if !strings.Contains(text, want) {
			t.Errorf("printed file lacks %q:\n%s", want, text)
		}
	}
	edited := strings.Replace(strings.Replace(text, "\nrate = 1000 ", "\nrate = 5000 ", 1), "\ntransport = \"auto\" ", "\ntransport = \"plain\" ", 1)
	path := filepath.Join(t.TempDir(), "edited.toml")
	os.WriteFile(path, []byte(edited), 0o600)
	back, err := load(t, []string{"--config", path}, nil)
	if err != nil {
		t.Fatalf("loading the edited file: %v", err)
	}
	back = back.WithDefaults()
	if back.Gateway.RateLimit != 5000 || back.Gateway.RateBurst != 10000 {
		t.Errorf("rate %d, burst %d; want 5000 and the derived 10000", back.Gateway.RateLimit, back.Gateway.RateBurst)
	}
	if back.Gateway.MaxFrame != protocol.MaxFrame || back.Gateway.MaxBody != protocol.MaxBody {
		t.Errorf("plain transport: max frame %d, body %d; want the plain defaults %d and %d", back.Gateway.MaxFrame, back.Gateway.MaxBody, protocol.MaxFrame, protocol.MaxBody)
	}
	if back.Gateway.Loops != 3 {
		t.Errorf("loops %d, want the 3 given", back.Gateway.Loops)
	}
}

// TestPrintShowsDefaults: with nothing given, every setting whose
// documented default is a value, not derived, is printed with that value.
// The cluster's heartbeat and down-after printed "0s" (0 stood for the
// default inside the cluster package).
func TestPrintShowsDefaults(t *testing.T) {
	c, err := load(t, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	full := c.WithDefaults()
	for _, s := range Settings() {
		var d Config
		if s.Set(&d, s.Default) != nil || strings.HasPrefix(s.Default, "none") || derived(s, &c, &full) {
			continue // a default in words, none, or derived from the machine
		}
		if got, want := s.Get(&full), s.Get(&d); got != want {
			t.Errorf("%s: in force %q, its documented default %q", s.Key, got, want)
		}
	}
}

// TestUnits: sizes and durations read and write in human units.
func TestUnits(t *testing.T) {
	for in, want := range map[string]int64{"4096": 4096, "256KiB": 256 << 10, "64MiB": 64 << 20, "16GiB": 16 << 30, "1_000": 1000, "-1": -1, "2k": 2048} {
		if got, err := parseSize(in); err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "KiB", "12 parsecs", "1.5MiB", "9999999TiB"} {
		if _, err := parseSize(bad); err == nil {
			t.Errorf("parseSize(%q) took it", bad)
		}
	}
	for d, want := range map[time.Duration]string{30 * 24 * time.Hour: "30d", 2 * time.Minute: "2m", 10 * time.Millisecond: "10ms", 36 * time.Hour: "36h", 90 * time.Second: "1m30s", 0: "0s"} {
		if got := formatDuration(d); got != want {
			t.Errorf("formatDuration(%v) = %q, want %q", d, got, want)
		}
		if back, err := parseDuration(want); err != nil || back != d {
			t.Errorf("parseDuration(%q) = %v, %v", want, back, err)
		}
	}
	if got := formatSize(65 << 10); got != "65KiB" {
		t.Errorf("formatSize(65KiB) = %q", got)
	}
}

// TestSettingsComplete: every setting has its flag, env, key, unit,
// default and usage, the names are unique, and each set writes what get
// reads.
func TestSettingsComplete(t *testing.T) {
	seen := map[string]bool{}
	for _, s := range Settings() {
		if s.Key == "" || s.Flag == "" || s.Unit == "" || s.Default == "" || len(s.Usage) < 20 || s.field == "" {
			t.Errorf("%+v is incomplete", s)
		}
		for _, n := range []string{s.Key, "--" + s.Flag, s.Env} {
			if seen[n] {
				t.Errorf("%s named twice", n)
			}
			seen[n] = true
		}
	}
	if n := len(Settings()); n < 45 {
		t.Errorf("%d settings; every field an operator may set should be one", n)
	}
}

// TestConfigDoc: docs/CONFIG.md's tables are the settings table's
// (go test ./node -run TestConfigDoc -update rewrites them).
func TestConfigDoc(t *testing.T) {
	const path, marker = "../docs/CONFIG.md", "<!-- Generated from node.Settings by `go test ./node -run TestConfigDoc -update`; edit the table there. -->\n"
	doc, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	head, _, ok := strings.Cut(string(doc), marker)
	if !ok {
		t.Fatalf("%s lacks the marker %q", path, marker)
	}
	var b strings.Builder
	Markdown(&b)
	want := head + marker + b.String()
	if *update {
		if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	if string(doc) != want {
		t.Fatalf("%s is out of date with node.Settings: run go test ./node -run TestConfigDoc -update", path)
	}
}

// TestTransports: auto offers both transports on a loopback listen address
// and Noise alone on any other; plain, noise and both say what they offer;
// anything else is refused by Validate, naming the setting.
func TestTransports(t *testing.T) {
	for _, tt := range []struct {
		transport, addr string
		noise, plain    bool
	}{
		{"", "127.0.0.1:7070", true, true},
		{"auto", "[::1]:7070", true, true},
		{"auto", "localhost:7070", true, true},
		{"auto", "0.0.0.0:7070", true, false},
		{"auto", "10.1.2.3:7070", true, false},
		{"plain", "0.0.0.0:7070", false, true},
		{"both", "0.0.0.0:7070", true, true},
		{"noise", "127.0.0.1:7070", true, false},
	} {
		c := Default()
		c.Transport, c.Gateway.Addr = tt.transport, tt.addr
		noise, plain := c.WithDefaults().Transports()
		if noise != tt.noise || plain != tt.plain {
			t.Errorf("%q on %s: noise %v plain %v, want %v %v", tt.transport, tt.addr, noise, plain, tt.noise, tt.plain)
		}
		if got := c.WithDefaults().Gateway.RefusePlain; got != !tt.plain {
			t.Errorf("%q on %s: RefusePlain %v", tt.transport, tt.addr, got)
		}
		if err := c.Validate(); err != nil {
			t.Errorf("%q on %s: %v", tt.transport, tt.addr, err)
		}
	}
	c := Default()
	c.Transport = "tls"
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "--transport") {
		t.Fatalf("transport tls: %v, want it refused naming --transport", err)
	}
}

// FuzzSettingValues: a size, a duration or a cluster's node list from a
// file, a flag or the environment parses or is refused with an error,
// never a panic, and what parses writes back to text that parses the
// same.
func FuzzSettingValues(f *testing.F) {
	f.Add("256KiB")
	f.Add("30d")
	f.Add("1=127.0.0.1:7070/127.0.0.1:6222/127.0.0.1:4222,2=h:1//")
	f.Add("-1")
	f.Add("9999999TiB")
	f.Fuzz(func(t *testing.T, s string) {
		if n, err := parseSize(s); err == nil {
			if back, err := parseSize(formatSize(n)); err != nil || back != n {
				t.Errorf("size %q = %d, written %q, read back %d, %v", s, n, formatSize(n), back, err)
			}
		}
		if d, err := parseDuration(s); err == nil {
			if back, err := parseDuration(formatDuration(d)); err != nil || back != d {
				t.Errorf("duration %q = %v, written %q, read back %v, %v", s, d, formatDuration(d), back, err)
			}
		}
		if nodes, err := parseNodes(s); err == nil {
			text := formatNodes(nodes)
			if back, err := parseNodes(text); err != nil || !slices.Equal(back, nodes) {
				t.Errorf("nodes %q = %v, written %q, read back %v, %v", s, nodes, text, back, err)
			}
		}
	})
}

// TestParseNodesRejects: a cluster-nodes entry that is not exactly
// id=client/route/nats is refused, naming it, rather than read in part.
func TestParseNodesRejects(t *testing.T) {
	for _, v := range []string{"1=a/b/c/d", "1=a/b", "1", "x=a/b/c", "1=a/b/c,2=d/e/f/g"} {
		if nodes, err := parseNodes(v); err == nil || !strings.Contains(err.Error(), "want id=client/route/nats") {
			t.Errorf("parseNodes(%q) = %v, %v; want it refused", v, nodes, err)
		}
	}
}
