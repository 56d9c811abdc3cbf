package bench

import (
	"fmt"
	"strings"

	"switchboard/home"
)

// clusterPairs is how a cluster run's users are placed: every user on
// its home node (home.Of over node IDs 1..N), pair after pair.
type clusterPairs struct {
	users []uint64 // two per pair, pair after pair
	homes []int    // the node of each user, 0-based: Servers[i] is node i+1
	cross int      // pairs whose two users are homed on different nodes
}

// pickPairs chooses the users of pairs pairs on a cluster of nodes nodes
// (IDs 1..nodes) so that exactly cross of them are cross-node (their two
// users homed on different nodes) and the others same-node. The cross
// pairs are spread evenly through the run (the u-th pair is cross when
// ⌊(u+1)·cross/pairs⌋ > ⌊u·cross/pairs⌋), so that every process and loop
// holds its share of both kinds. Each kind is spread evenly over the nodes
// and, for cross pairs, over the ordered pairs of nodes. The ids are
// walked from base upwards and each is taken by its home node while that
// node still needs users: the ids used lie in base..base+~2·pairs, a few
// percent more than a run without a cluster uses.
func pickPairs(base uint64, pairs, cross, nodes int) (clusterPairs, error) {
	switch {
	case nodes < 1 || nodes > maxClusterNodes:
		return clusterPairs{}, fmt.Errorf("bench: a cluster of %d nodes: want 1..%d", nodes, maxClusterNodes)
	case cross < 0 || cross > pairs:
		return clusterPairs{}, fmt.Errorf("bench: %d cross-node pairs of %d", cross, pairs)
	case cross > 0 && nodes < 2:
		return clusterPairs{}, fmt.Errorf("bench: cross-node pairs need at least two nodes")
	}
	// The nodes of each user, first.
	homes := make([]int, 0, 2*pairs)
	need := make([]int, nodes)
	xs, ss := 0, 0 // cross and same-node pairs placed so far
	for u := range pairs {
		var a, b int
		if (u+1)*cross/pairs > u*cross/pairs {
			// The j-th cross pair: a cycles over the nodes, b over the
			// others, so that every ordered pair of nodes gets its share.
			a = xs % nodes
			b = (a + 1 + (xs/nodes)%(nodes-1)) % nodes
			xs++
		} else {
			a = ss % nodes
			b = a
			ss++
		}
		homes = append(homes, a, b)
		need[a]++
		need[b]++
	}
	// Then the ids: each node's, in the order they come.
	ids := make([]uint32, nodes)
	for i := range ids {
		ids[i] = uint32(i + 1)
	}
	byNode := make([][]uint64, nodes)
	left := 2 * pairs
	// Each node wins about 1/nodes of the ids and needs about 1/nodes of
	// the users: the walk takes a few percent more ids than users. The
	// bound only stops a broken home function from walking for ever.
	limit := base + uint64(16*2*pairs+1024)
	for id := base; left > 0; id++ {
		if id >= limit {
			return clusterPairs{}, fmt.Errorf("bench: walked ids %d..%d and still miss %d users for the nodes", base, limit, left)
		}
		h := int(home.Of(id, ids)) - 1
		if len(byNode[h]) < need[h] {
			byNode[h] = append(byNode[h], id)
			left--
		}
	}
	cp := clusterPairs{users: make([]uint64, len(homes)), homes: homes, cross: cross}
	next := make([]int, nodes)
	for i, h := range homes {
		cp.users[i] = byNode[h][next[h]]
		next[h]++
	}
	return cp, nil
}

// maxClusterNodes bounds --cluster-nodes as cluster.MaxNodes bounds a
// cluster's node list (restated: bench does not import cluster).
const maxClusterNodes = 64

// clusterNote says how a cluster run's pairs are placed on its nodes.
func clusterNote(cfg *Config, servers []Target, cp clusterPairs) string {
	units, _ := cfg.shape()
	perNode := make([]int, len(servers))
	for _, h := range cp.homes {
		perNode[h]++
	}
	var b strings.Builder
	fmt.Fprintf(&b, "a cluster of %d nodes (--addr in node order 1..%d); %d pairs, %d cross-node (their two users homed on different nodes: every message and receipt crosses between nodes) and %d same-node; each user logs in to its home node:",
		len(servers), len(servers), units, cp.cross, units-cp.cross)
	for i, t := range servers {
		sep := ","
		if i == len(servers)-1 {
			sep = ""
		}
		fmt.Fprintf(&b, " node %d %s %s%s", i+1, t.Addr, formatConns(perNode[i]), sep)
	}
	return b.String()
}
