package cluster

import (
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

func ids(n ...uint32) Config {
	var c Config
	for _, id := range n {
		c.Nodes = append(c.Nodes, NodeAddr{ID: id})
	}
	return c
}

// TestHomeFixed pins Home for a few ids: a change of the function would
// move mailboxes in every running cluster, so it must show up here.
func TestHomeFixed(t *testing.T) {
	c := ids(1, 2, 3)
	shuffled := ids(3, 1, 2)
	for _, tc := range []struct {
		id   uint64
		home uint32
	}{
		{0, 2}, {1, 2}, {2, 2}, {3, 1}, {42, 1}, {1000, 1}, {1 << 40, 1}, {^uint64(0), 3},
	} {
		if got := c.Home(tc.id); got != tc.home {
			t.Errorf("Home(%d) = %d, want %d", tc.id, got, tc.home)
		}
		if got := shuffled.Home(tc.id); got != tc.home {
			t.Errorf("Home(%d) with the list in another order = %d, want %d", tc.id, got, tc.home)
		}
	}
	if got := (Config{}).Home(7); got != 0 {
		t.Errorf("Home with no nodes = %d, want 0", got)
	}
}

// TestHomeSpread checks the balance over 100,000 ids and that a fourth node
// takes about a quarter of them, all from the others, and moves no other.
func TestHomeSpread(t *testing.T) {
	const n = 100_000
	three, four := ids(1, 2, 3), ids(1, 2, 3, 4)
	count := map[uint32]int{}
	moved := 0
	for id := range uint64(n) {
		id = id*7919 + 12345 // not only consecutive ids
		h3, h4 := three.Home(id), four.Home(id)
		count[h3]++
		if h3 != h4 {
			moved++
			if h4 != 4 {
				t.Fatalf("id %d moved from node %d to node %d, not to the new node", id, h3, h4)
			}
		}
	}
	for node := uint32(1); node <= 3; node++ {
		if share := float64(count[node]) / n; share < 0.30 || share > 0.37 {
			t.Errorf("node %d homes %.1f%% of ids, want 30-37%%", node, 100*share)
		}
	}
	if share := float64(moved) / n; share < 0.20 || share > 0.30 {
		t.Errorf("adding a fourth node moved %.1f%% of ids, want 20-30%%", 100*share)
	}
}

// TestHash: the order of the list does not matter; every field does.
func TestHash(t *testing.T) {
	base := Config{Name: "a", Self: 1, Nodes: []NodeAddr{
		{1, "h:1", "h:2", "h:3"}, {2, "h:4", "h:5", "h:6"},
	}}
	other := base
	other.Self = 2
	other.Nodes = []NodeAddr{base.Nodes[1], base.Nodes[0]}
	other.Heartbeat = time.Second
	if base.Hash() != other.Hash() {
		t.Error("hash depends on the order of the list, Self or Heartbeat")
	}
	for name, change := range map[string]func(*Config){
		"name":   func(c *Config) { c.Name = "b" },
		"client": func(c *Config) { c.Nodes[1].Client = "h:9" },
		"route":  func(c *Config) { c.Nodes[1].Route = "h:9" },
		"nats":   func(c *Config) { c.Nodes[1].NATS = "h:9" },
		"id":     func(c *Config) { c.Nodes[1].ID = 3 },
		"fewer":  func(c *Config) { c.Nodes = c.Nodes[:1] },
	} {
		c := base
		c.Nodes = append([]NodeAddr(nil), base.Nodes...)
		change(&c)
		if c.Hash() == base.Hash() {
			t.Errorf("hash does not change with the %s", name)
		}
	}
}

// TestValidate reports every problem at once.
func TestValidate(t *testing.T) {
	good := Config{Name: "sb-1", Self: 1, Nodes: []NodeAddr{
		{1, "127.0.0.1:7001", "127.0.0.1:7101", "127.0.0.1:7201"},
		{2, "127.0.0.1:7002", "127.0.0.1:7102", "127.0.0.1:7202"},
	}}
	if err := good.Validate(); err != nil {
		t.Fatalf("good config: %v", err)
	}
	hosts := Config{Name: "sb", Self: 2, Nodes: []NodeAddr{
		{1, "10.0.0.1:7070", "10.0.0.1:6222", "127.0.0.1:4222"},
		{2, "10.0.0.2:7070", "10.0.0.2:6222", "127.0.0.1:4222"},
	}}
	if err := hosts.Validate(); err != nil {
		t.Fatalf("one loopback NATS address on every host: %v", err)
	}
	external := good
	external.External = "nats://10.0.0.1:4222, nats://10.0.0.2:4222"
	external.Nodes = []NodeAddr{{ID: 1, Client: "10.0.0.1:7000"}, {ID: 2, Client: "10.0.0.2:7000"}}
	if err := external.Validate(); err != nil {
		t.Fatalf("external config: %v", err)
	}

	bad := Config{Name: "a.b", Self: 9, Nodes: []NodeAddr{
		{0, "127.0.0.1:7001", "127.0.0.1:7101", "127.0.0.1:7201"},
		{2, "nohost", "127.0.0.1:7102", "127.0.0.1:7202"},
		{2, "127.0.0.1:7003", "127.0.0.1:7101", "127.0.0.1:70000"},
	}, Heartbeat: 1500 * time.Millisecond, DownAfter: 2 * time.Second}
	err := bad.Validate()
	want := []string{
		`name "a.b"`,
		"node #1: id 0",
		"node id 2 listed twice",
		`node 2: client address "nohost"`,
		"route address 127.0.0.1:7101 is also node 0's",
		`nats address "127.0.0.1:70000"`,
		"Self 9 is not one of Nodes' ids",
		"down-after 2s is under twice the heartbeat 1.5s",
	}
	if err == nil {
		t.Fatal("bad config accepted")
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error does not say %q:\n%v", w, err)
		}
	}
	if n := len(err.(interface{ Unwrap() []error }).Unwrap()); n != len(want) {
		t.Errorf("%d errors, want %d:\n%v", n, len(want), err)
	}
	if err := (Config{Name: "x", Self: 1, Nodes: []NodeAddr{{ID: 1, Client: "h:1"}}, External: "http://x"}).Validate(); err == nil || !strings.Contains(err.Error(), "external url") {
		t.Errorf("bad external url: %v", err)
	}

	// Listeners of one host that would meet at start, and settings left
	// out, each named as such.
	for _, tc := range []struct {
		name  string
		nodes []NodeAddr
		self  uint32
		want  string
	}{
		{"no self", good.Nodes, 0, "Self is not set"},
		{"route and nats one address", []NodeAddr{{1, "127.0.0.1:7001", "127.0.0.1:7101", "127.0.0.1:7101"}}, 1, "node 1: nats address 127.0.0.1:7101 is also its own client or route address"},
		{"client and nats one address", []NodeAddr{{1, "127.0.0.1:7001", "127.0.0.1:7101", "127.0.0.1:7001"}}, 1, "node 1: nats address 127.0.0.1:7001 is also its own client or route address"},
		{"nats another node's client", []NodeAddr{{1, "127.0.0.1:7001", "127.0.0.1:7101", "127.0.0.1:7002"}, {2, "127.0.0.1:7002", "127.0.0.1:7102", "127.0.0.1:7202"}}, 1, "node 1: nats address 127.0.0.1:7002 is also node 2's"},
		{"no route", []NodeAddr{{1, "127.0.0.1:7001", "", ""}}, 1, "node 1: no route address: each of Nodes is id=client/route/nats, and route and nats are left empty only with External"},
	} {
		err := Config{Name: "x", Self: tc.self, Nodes: tc.nodes}.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
}

// TestHeartbeat round-trips a heartbeat and a leaving notice, and rejects
// short or foreign ones.
func TestHeartbeat(t *testing.T) {
	b := appendHeartbeat(nil, 7, 0x0102030405060708, 99, "name\n1 a b c\n")
	hb, err := parseHeartbeat(b)
	if err != nil || hb.node != 7 || hb.hash != 0x0102030405060708 || hb.instance != 99 || string(hb.text) != "name\n1 a b c\n" || hb.leaving {
		t.Fatalf("parse = %+v, %v", hb, err)
	}
	lv, err := parseHeartbeat(appendLeaving(nil, 7, 0x0102030405060708, 99, "name\n1 a b c\n"))
	if err != nil || !lv.leaving || lv.node != 7 || lv.instance != 99 || string(lv.text) != "name\n1 a b c\n" {
		t.Fatalf("parse of a leaving notice = %+v, %v", lv, err)
	}
	for _, short := range [][]byte{nil, b[:heartbeatHeader-1], append([]byte{3}, b[1:]...)} {
		if _, err := parseHeartbeat(short); !errors.Is(err, errHeartbeat) {
			t.Errorf("parse(% x) err = %v", short, err)
		}
	}
}

// TestDescribeDiff names a different name, address, and node on each side.
func TestDescribeDiff(t *testing.T) {
	ours := "a\n1 c1 r1 n1\n2 c2 r2 n2\n10 c10 r10 n10\n"
	theirs := "b\n1 c1 r1 n1\n2 cX r2 n2\n3 c3 r3 n3\n"
	want := `cluster name "a" here, "b" there; node 2 is "c2 r2 n2" here, "cX r2 n2" there (client route nats); node 10 is listed here only; node 3 is listed there only`
	if got := describeDiff(ours, theirs); got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}

// TestLaterMismatch: after Start, a peer whose heartbeat carries another
// hash is down and logged once, and up again once its heartbeat matches;
// another process with this node's ID is reported.
func TestLaterMismatch(t *testing.T) {
	cfg := Config{Name: "m", Self: 1, Nodes: []NodeAddr{
		{1, "h:1", "h:2", "h:3"}, {2, "h:4", "h:5", "h:6"},
	}}
	var logged strings.Builder
	cfg.Logger = slog.New(slog.NewTextHandler(&logged, nil))
	cfg = cfg.withDefaults()
	c := &Cluster{cfg: cfg, log: cfg.Logger, hash: cfg.Hash(), canon: cfg.canonical(), instance: 1, epoch: time.Now(),
		peers: map[uint32]*peer{2: {}}, mismatch: make(chan error, 1)}

	other := cfg
	other.Nodes = []NodeAddr{cfg.Nodes[0], {2, "h:9", "h:5", "h:6"}}
	good := appendHeartbeat(nil, 2, cfg.Hash(), 5, cfg.canonical())
	bad := appendHeartbeat(nil, 2, other.Hash(), 5, other.canonical())

	c.heard(&nats.Msg{Data: good})
	if !c.Up(2) {
		t.Fatal("node 2 down after a matching heartbeat")
	}
	c.heard(&nats.Msg{Data: bad})
	c.heard(&nats.Msg{Data: bad})
	if c.Up(2) {
		t.Error("node 2 up after a mismatched heartbeat")
	}
	if n := strings.Count(logged.String(), "node treated as down"); n != 1 {
		t.Errorf("mismatch logged %d times, want once:\n%s", n, logged.String())
	}
	if !strings.Contains(logged.String(), `node 2 is \"h:4 h:5 h:6\" here, \"h:9 h:5 h:6\" there`) {
		t.Errorf("log does not say what differs:\n%s", logged.String())
	}
	select {
	case err := <-c.mismatch:
		t.Errorf("a mismatch after Start reached Start: %v", err)
	default:
	}
	c.heard(&nats.Msg{Data: good})
	if !c.Up(2) {
		t.Error("node 2 still down after its heartbeat matched again")
	}

	c.heard(&nats.Msg{Data: []byte("junk")})
	c.heard(&nats.Msg{Data: nil})
	if got := c.Stats().Malformed; got != 2 {
		t.Errorf("Malformed = %d, want 2", got)
	}
	if n := strings.Count(logged.String(), "malformed heartbeat"); n != 1 {
		t.Errorf("malformed heartbeats logged %d times, want once", n)
	}

	c.starting.Store(true)
	c.heard(&nats.Msg{Data: appendHeartbeat(nil, 1, cfg.Hash(), 77, cfg.canonical())})
	select {
	case err := <-c.mismatch:
		if !errors.Is(err, ErrNodeInUse) || !strings.Contains(err.Error(), "another process already runs as node 1") {
			t.Errorf("duplicate node: %v", err)
		}
	default:
		t.Error("another process with this node's ID went unnoticed")
	}
}

// TestDownAfterFollowsHeartbeat: left unset, DownAfter is 2 s at the
// default heartbeat and eight heartbeats when the heartbeat is longer, so
// a heartbeat lengthened for a large cluster is a valid configuration on
// its own; set, it is kept.
func TestDownAfterFollowsHeartbeat(t *testing.T) {
	for _, c := range []struct{ heartbeat, set, want time.Duration }{
		{0, 0, 2 * time.Second},
		{100 * time.Millisecond, 0, 2 * time.Second},
		{1500 * time.Millisecond, 0, 12 * time.Second},
		{1500 * time.Millisecond, 3 * time.Second, 3 * time.Second},
	} {
		got := Config{Heartbeat: c.heartbeat, DownAfter: c.set}.withDefaults().DownAfter
		if got != c.want {
			t.Errorf("heartbeat %v, down-after set to %v: %v, want %v", c.heartbeat, c.set, got, c.want)
		}
	}
	cfg := Config{Name: "x", Self: 1, Nodes: []NodeAddr{{1, "127.0.0.1:7001", "127.0.0.1:7101", "127.0.0.1:7201"}}, Heartbeat: 2 * time.Second}
	if err := cfg.Validate(); err != nil {
		t.Errorf("a 2 s heartbeat alone: %v", err)
	}
}

// TestStartListensForItsOwnID: Start does not end as soon as every peer is
// up (or at once, with none listed) but two heartbeat intervals after, so
// that the heartbeat of another process already running as this node is
// heard while it starts; one heard then refuses the start.
func TestStartListensForItsOwnID(t *testing.T) {
	for _, peers := range []int{0, 1} {
		cfg := Config{Name: "m", Self: 1, Nodes: []NodeAddr{{1, "h:1", "h:2", "h:3"}, {2, "h:4", "h:5", "h:6"}},
			Heartbeat: 40 * time.Millisecond, DownAfter: 5 * time.Second}
		cfg = cfg.withDefaults()
		c := &Cluster{cfg: cfg, log: cfg.Logger, hash: cfg.Hash(), canon: cfg.canonical(), instance: 1, epoch: time.Now(),
			peers: map[uint32]*peer{}, mismatch: make(chan error, 1)}
		if peers == 1 {
			c.peers[2] = &peer{}
			c.heard(&nats.Msg{Data: appendHeartbeat(nil, 2, cfg.Hash(), 5, cfg.canonical())})
		}
		c.starting.Store(true)
		start := time.Now()
		if err := c.awaitPeers(); err != nil {
			t.Fatalf("%d peers up: %v", peers, err)
		}
		if took := time.Since(start); took < 2*cfg.Heartbeat {
			t.Errorf("%d peers up: Start waited %v, under two heartbeats (%v) for another process with its ID", peers, took, 2*cfg.Heartbeat)
		}
		if c.starting.Load() {
			t.Errorf("%d peers up: still starting after awaitPeers", peers)
		}

		// Another process runs as node 1: its heartbeat, heard while
		// starting, refuses the start.
		c.starting.Store(true)
		c.heard(&nats.Msg{Data: appendHeartbeat(nil, 1, cfg.Hash(), 77, cfg.canonical())})
		if err := c.awaitPeers(); !errors.Is(err, ErrNodeInUse) {
			t.Errorf("%d peers up, a second node 1 heard: %v, want ErrNodeInUse", peers, err)
		}
	}
}
