package bench

import (
	"context"
	"encoding/hex"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"switchboard/cluster"
	"switchboard/home"
	"switchboard/node"
	"switchboard/protocol"
	"switchboard/token"
)

// TestPlacePairs checks the id choice of a cluster run of pairs: exactly
// the cross pairs asked for, every user on the node its id is homed on, no
// id twice, and the kinds spread evenly over the nodes and the ordered
// pairs of nodes.
func TestPlacePairs(t *testing.T) {
	const base = 1_000_000_000
	for _, tc := range []struct {
		name                string
		pairs, cross, nodes int
	}{
		{"all cross, three nodes", 60, 60, 3},
		{"none cross, three nodes", 60, 0, 3},
		{"a quarter cross", 100, 25, 3},
		{"two nodes, a third cross", 31, 10, 2},
		{"one node", 7, 0, 1},
		{"five nodes, all cross", 40, 40, 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cp, err := placeUnits(base, tc.pairs, 2, tc.cross, tc.nodes)
			if err != nil {
				t.Fatal(err)
			}
			if len(cp.users) != 2*tc.pairs || len(cp.homes) != 2*tc.pairs {
				t.Fatalf("%d users and %d homes, want %d", len(cp.users), len(cp.homes), 2*tc.pairs)
			}
			nodes := make([]uint32, tc.nodes)
			for i := range nodes {
				nodes[i] = uint32(i + 1)
			}
			seen := map[uint64]bool{}
			perNode := make([]int, tc.nodes)
			ordered := map[[2]int]int{} // cross pairs by (a's node, b's node)
			cross := 0
			for i, id := range cp.users {
				if seen[id] {
					t.Fatalf("user %d chosen twice", id)
				}
				seen[id] = true
				if id < base {
					t.Fatalf("user %d below the base %d", id, base)
				}
				if got := int(home.Of(id, nodes)) - 1; got != cp.homes[i] {
					t.Fatalf("user %d is homed on node %d, the plan says node %d", id, got+1, cp.homes[i]+1)
				}
				perNode[cp.homes[i]]++
				if i%2 == 1 && cp.homes[i-1] != cp.homes[i] {
					cross++
					ordered[[2]int{cp.homes[i-1], cp.homes[i]}]++
				}
			}
			if cross != tc.cross || cp.spanning != tc.cross {
				t.Errorf("%d cross-node pairs (the plan says %d), want %d", cross, cp.spanning, tc.cross)
			}
			for n, c := range perNode {
				if want := 2 * tc.pairs / tc.nodes; c < want-1 || c > want+2 {
					t.Errorf("node %d homes %d users, want about %d", n+1, c, want)
				}
			}
			if tc.cross > 0 {
				combos := tc.nodes * (tc.nodes - 1)
				for k, c := range ordered {
					if want := tc.cross / combos; c < want || c > want+1 {
						t.Errorf("nodes %d→%d carry %d cross pairs, want %d or %d", k[0]+1, k[1]+1, c, want, want+1)
					}
				}
				if tc.cross >= combos && len(ordered) != combos {
					t.Errorf("%d ordered node pairs used, want all %d", len(ordered), combos)
				}
			}
		})
	}
}

// TestClusterConfig checks the rounding of --cross to whole pairs and the
// refusals of a cluster setting that cannot hold.
func TestClusterConfig(t *testing.T) {
	c := Config{Scenario: "chat", Pairs: 10, Cross: 0.25, ClusterNodes: 3}
	if got := c.spanningUnits(); got != 3 {
		t.Errorf("--cross 0.25 of 10 pairs: %d cross-node pairs, want 3", got)
	}
	if maxClusterNodes != cluster.MaxNodes {
		t.Errorf("maxClusterNodes %d restates cluster.MaxNodes %d", maxClusterNodes, cluster.MaxNodes)
	}
	addr3 := "127.0.0.1:7071,127.0.0.1:7072,127.0.0.1:7073"
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"node count", Config{Scenario: "chat", Addr: addr3, ClusterNodes: 2, Cross: 1}, "--addr lists 3 nodes"},
		{"group spanning one node", Config{Scenario: "group", Addr: "127.0.0.1:7071", ClusterNodes: 1, Cross: 1}, "needs at least two nodes"},
		{"cross without cluster", Config{Scenario: "chat", Addr: addr3, Cross: 1}, "--cross 1 needs --cluster-nodes"},
		{"cross over 1", Config{Scenario: "chat", Addr: addr3, ClusterNodes: 3, Cross: 1.5}, "--cross 1.5 must be in [0, 1]"},
		{"cross on one node", Config{Scenario: "chat", Addr: "127.0.0.1:7071", ClusterNodes: 1, Cross: 0.5}, "needs at least two nodes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg
			cfg.Metrics = "-"
			cfg.setDefaults()
			err := cfg.validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("validate: %v, want an error naming %q", err, tc.want)
			}
		})
	}
}

// TestPlaceGroups checks the placement of a cluster run's groups: every
// member on the node its id is homed on and the node the rule asks for
// (member j of the x-th spanning group on node (x+j) mod N; every member
// of the s-th one-node group on node s mod N), exactly the spanning groups
// asked for, each over min(size, N) nodes and spread evenly through the
// run, and no id twice.
func TestPlaceGroups(t *testing.T) {
	const base = 1_000_000_000
	for _, tc := range []struct {
		name                      string
		groups, size, span, nodes int
	}{
		{"all spanning, three nodes", 12, 10, 12, 3},
		{"none spanning, three nodes", 12, 10, 0, 3},
		{"a third spanning", 30, 4, 10, 3},
		{"groups smaller than the cluster", 20, 3, 20, 5},
		{"two nodes, half spanning", 9, 7, 5, 2},
		{"one node", 4, 6, 0, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := placeUnits(base, tc.groups, tc.size, tc.span, tc.nodes)
			if err != nil {
				t.Fatal(err)
			}
			if len(p.users) != tc.groups*tc.size || len(p.homes) != len(p.users) {
				t.Fatalf("%d users and %d homes, want %d", len(p.users), len(p.homes), tc.groups*tc.size)
			}
			nodes := make([]uint32, tc.nodes)
			for i := range nodes {
				nodes[i] = uint32(i + 1)
			}
			seen := map[uint64]bool{}
			for i, id := range p.users {
				if seen[id] {
					t.Fatalf("user %d chosen twice", id)
				}
				seen[id] = true
				if got := int(home.Of(id, nodes)) - 1; got != p.homes[i] {
					t.Fatalf("user %d is homed on node %d, the plan says node %d", id, got+1, p.homes[i]+1)
				}
			}
			spanning, xs, ss := 0, 0, 0
			for g := range tc.groups {
				homes := p.homes[g*tc.size : (g+1)*tc.size]
				on := map[int]bool{}
				for _, h := range homes {
					on[h] = true
				}
				// The g-th group spans when the share reached by it
				// passes a whole group: the spanning ones spread evenly.
				wantSpan := (g+1)*tc.span/tc.groups > g*tc.span/tc.groups
				for j, h := range homes {
					want := ss % tc.nodes
					if wantSpan {
						want = (xs + j) % tc.nodes
					}
					if h != want {
						t.Fatalf("group %d (spanning %v): member %d on node %d, want node %d", g, wantSpan, j, h+1, want+1)
					}
				}
				if wantSpan {
					if len(on) != min(tc.size, tc.nodes) {
						t.Errorf("spanning group %d is on %d nodes, want %d", g, len(on), min(tc.size, tc.nodes))
					}
					spanning++
					xs++
				} else {
					if len(on) != 1 {
						t.Errorf("one-node group %d is on %d nodes", g, len(on))
					}
					ss++
				}
			}
			if spanning != tc.span || p.spanning != tc.span {
				t.Errorf("%d spanning groups (the plan says %d), want %d", spanning, p.spanning, tc.span)
			}
		})
	}
	// A share of the groups, as makePlan asks for it: --cross 0.25 of 10
	// groups is 3 spanning.
	c := Config{Scenario: "group", Groups: 10, GroupSize: 5, Cross: 0.25, ClusterNodes: 3}
	if got := c.spanningUnits(); got != 3 {
		t.Errorf("--cross 0.25 of 10 groups: %d spanning, want 3", got)
	}
}

// TestChatCluster runs a closed-loop chat on a three-node cluster (real
// NATS between the nodes, Badger in temporary folders) with every pair
// cross-node: each user logs in to its home directly (no MOVED), and the
// checks (exactly once, in order, a receipt per copy) hold across nodes.
func TestChatCluster(t *testing.T) {
	addrs, keys := startCluster(t, 3)
	cfg := Config{Scenario: "chat", Addr: strings.Join(addrs, ","), Keys: keys, Metrics: "-", Drain: 10 * time.Second,
		ClusterNodes: 3, Cross: 1, Pairs: 6, Rate: 0, Window: 4, Duration: time.Second,
		Procs: 2} // two processes: each spec carries its slice of the users and homes
	res := runOK(t, cfg)
	if res.Sent == 0 {
		t.Fatal("sent nothing")
	}
	checkAllDelivered(t, res, res.Sent)
	checkAllReceipted(t, res)
	if res.Figures["cross_node_pairs"] != 6 || res.Figures["same_node_pairs"] != 0 {
		t.Errorf("figures %v: want 6 cross-node pairs, 0 same-node", res.Figures)
	}
	if n := res.Closes[protocol.CodeMoved.String()]; n != 0 {
		t.Errorf("%d logins were redirected home: each user should dial its home node", n)
	}
	if res.Processes != 3 {
		t.Errorf("%d processes, want 3 (two workers and the coordinator)", res.Processes)
	}
	if res.LoginLatency.TotalCount() != 12 {
		t.Errorf("%d logins, want 12 (one per user)", res.LoginLatency.TotalCount())
	}
}

// TestGroupCluster runs an open-loop group scenario on a three-node
// cluster with every group spanning the three nodes (members 0..3 of the
// x-th group on nodes x, x+1, x+2, x+3 mod 3): each member logs in to its
// home directly, every message goes to the group's home node and is fanned
// out to the nodes homing its members, and the checks (each member holds
// each message once and in order per sender, a receipt per copy) hold
// across nodes.
func TestGroupCluster(t *testing.T) {
	addrs, keys := startCluster(t, 3)
	cfg := Config{Scenario: "group", Addr: strings.Join(addrs, ","), Keys: keys, Metrics: "-", Drain: 10 * time.Second,
		ClusterNodes: 3, Cross: 1, Groups: 3, GroupSize: 4, Senders: 2, Rate: 60, Duration: time.Second,
		Procs: 2} // two processes: each spec carries its slice of the members and homes
	res := runOK(t, cfg)
	// 60 messages, each to the three other members of its group.
	if res.Sent != 60 || res.Accepted != 60 || res.Delivered != 60*3 {
		t.Errorf("sent %d, accepted %d, delivered %d: want 60 messages, 3 copies each", res.Sent, res.Accepted, res.Delivered)
	}
	if res.Lost+res.Duplicates+res.Reordered != 0 {
		t.Errorf("lost %d, duplicates %d, reordered %d", res.Lost, res.Duplicates, res.Reordered)
	}
	checkAllReceipted(t, res) // one per member's copy
	if res.Figures["spanning_groups"] != 3 || res.Figures["same_node_groups"] != 0 {
		t.Errorf("figures %v: want 3 spanning groups, 0 on one node", res.Figures)
	}
	if n := res.Closes[protocol.CodeMoved.String()]; n != 0 {
		t.Errorf("%d logins were redirected home: each member should dial its home node", n)
	}
	if res.LoginLatency.TotalCount() != 12 {
		t.Errorf("%d logins, want 12 (one per member)", res.LoginLatency.TotalCount())
	}
	// Every group has members on every node, so on its own home too.
	if got, ok := res.Figures["groups_homed_apart"]; !ok || got != 0 {
		t.Errorf("groups_homed_apart %v (reported %v), want 0: each group has members on all three nodes", got, ok)
	}
}

// TestClusterNoteGroups checks the note of a group run's placement: the
// spanning groups and the rule, and each node's connections.
func TestClusterNoteGroups(t *testing.T) {
	servers := []Target{{Addr: "a:1"}, {Addr: "b:2"}, {Addr: "c:3"}}
	for _, tc := range []struct {
		span int
		want string
	}{
		{3, "a cluster of 3 nodes (--addr in node order 1..3); 3 groups of 4 members, 3 spanning nodes (member j of the x-th on node (x+j) mod 3: each one's members homed on 3 nodes) and 0 with all their members on one node; each user logs in to its home node: node 1 a:1 4 conns, node 2 b:2 4 conns, node 3 c:3 4 conns"},
		{0, "a cluster of 3 nodes (--addr in node order 1..3); 3 groups of 4 members, 0 spanning nodes and 3 with all their members on one node; each user logs in to its home node: node 1 a:1 4 conns, node 2 b:2 4 conns, node 3 c:3 4 conns"},
	} {
		p, err := placeUnits(1_000_000_000, 3, 4, tc.span, 3)
		if err != nil {
			t.Fatal(err)
		}
		cfg := &Config{Scenario: "group", Groups: 3, GroupSize: 4}
		if got := clusterNote(cfg, servers, p); got != tc.want {
			t.Errorf("note\n %q, want\n %q", got, tc.want)
		}
	}
}

// TestGroupApart checks the count of groups whose home node homes none of
// their members: a group id homed on a member's node is not apart, one
// homed on another node is.
func TestGroupApart(t *testing.T) {
	ids := []uint32{1, 2, 3}
	u := &unit{conns: []*conn{{home: 2}, {home: 2}, {home: 0}}}
	var on, off uint64 // group ids homed on a member's node and on node 2 (index 1)
	for id := uint64(1 << 28); on == 0 || off == 0; id++ {
		switch home.Of(id, ids) {
		case 3:
			on = id
		case 2:
			off = id
		}
	}
	if groupApart(u, on, 3) {
		t.Errorf("group %d homed on node 3, where two members live, counted apart", on)
	}
	if !groupApart(u, off, 3) {
		t.Errorf("group %d homed on node 2, where no member lives, not counted apart", off)
	}
}

// startCluster starts n nodes of one cluster in the test's process, each
// with its Badger store in a temporary folder and its embedded NATS
// server, and returns their client addresses (node 1 first) and a keys
// file their tokens verify with.
func startCluster(t *testing.T, n int) (addrs []string, keys string) {
	t.Helper()
	secret := make([]byte, token.SecretLen)
	for i := range secret {
		secret[i] = byte(i*13 + 5)
	}
	free := make([]string, 3*n)
	var lns []net.Listener
	for i := range free {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
		free[i] = ln.Addr().String()
	}
	for _, ln := range lns {
		ln.Close()
	}
	cc := cluster.Config{Name: "bench"}
	for i := range n {
		cc.Nodes = append(cc.Nodes, cluster.NodeAddr{ID: uint32(i + 1), Client: free[3*i], Route: free[3*i+1], NATS: free[3*i+2]})
		addrs = append(addrs, free[3*i])
	}
	nodes := make([]*node.Node, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		cfg := node.Default()
		cfg.Data = t.TempDir()
		cfg.Metrics = ""
		cfg.Logger = slog.New(slog.DiscardHandler)
		cfg.Gateway.Addr = cc.Nodes[i].Client
		cfg.Gateway.Loops = 1
		cfg.Gateway.Keys = token.Keys{1: secret}
		cfg.Delivery.Shards = 2
		cfg.Cluster = cc
		cfg.Cluster.Self = uint32(i + 1)
		// The nodes start together: each waits to hear the others.
		wg.Go(func() {
			// A port freed above may still be held a moment: poll until a
			// deadline (t.Fatal may not be called from here).
			deadline := time.Now().Add(10 * time.Second)
			for {
				nodes[i], errs[i] = node.Start(cfg)
				if errs[i] == nil || time.Now().After(deadline) {
					return
				}
				time.Sleep(10 * time.Millisecond)
			}
		})
	}
	wg.Wait()
	t.Cleanup(func() {
		for _, nd := range nodes {
			if nd != nil {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				nd.Stop(ctx)
				cancel()
			}
		}
	})
	for i, err := range errs {
		if err != nil {
			t.Fatalf("node %d did not start: %v", i+1, err)
		}
	}
	keys = filepath.Join(t.TempDir(), "keys")
	if err := os.WriteFile(keys, []byte("1 "+hex.EncodeToString(secret)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return addrs, keys
}

// TestPerServerCPUNote checks the note of each node's CPU over the
// measured phase: the difference of its two scrapes, and per message.
func TestPerServerCPUNote(t *testing.T) {
	r := &run{cfg: &Config{ClusterNodes: 2}, scr: scrapers{addrs: []string{"a:1", "b:2"}}}
	from := serverMetrics{CPU: 3, Each: []serverMetrics{{CPU: 1}, {CPU: 2}}}
	to := serverMetrics{CPU: 9, Each: []serverMetrics{{CPU: 3.5}, {CPU: 5.5}}}
	r.notePerServerCPU(&Result{Delivered: 1000}, from, to)
	want := "server CPU over the measured phase, per server: node 1 (a:1) 2.50 s, 2500.0 µs per delivered message; node 2 (b:2) 3.50 s, 3500.0 µs per delivered message"
	if len(r.notes) != 1 || r.notes[0] != want {
		t.Errorf("notes %q, want [%q]", r.notes, want)
	}
}
