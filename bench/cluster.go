package bench

import (
	"fmt"
	"strings"

	"switchboard/home"
)

// placement is how a cluster run's users are placed: every user on its
// home node (home.Of over node IDs 1..N), unit after unit.
type placement struct {
	users    []uint64 // size per unit, unit after unit
	homes    []int    // the node of each user, 0-based: Servers[i] is node i+1
	size     int      // users per unit: 2 for a pair, --group-size for a group
	spanning int      // units whose users are homed on more than one node
}

// placeUnits chooses the users of units units of size users each on a
// cluster of nodes nodes (IDs 1..nodes) so that exactly spanning of them
// span nodes (their users homed on more than one node) and the others
// live on one node. The spanning units are spread evenly through the run
// (the u-th unit spans when ⌊(u+1)·spanning/units⌋ > ⌊u·spanning/units⌋),
// so that every process and loop holds its share of both kinds. With x
// the count of spanning units before it, a spanning unit's member j is
// homed on node (x+j) mod nodes, so that it spans min(size, nodes) nodes
// and the spanning units start evenly over the nodes (with every unit
// spanning, member j of unit u is on node (u+j) mod nodes); a pair's
// second user instead cycles over the other nodes, (x+1+⌊x/nodes⌋ mod
// (nodes−1)) mod nodes, so that every ordered pair of nodes carries its
// share of the cross-node pairs. The s-th unit on one node is homed on
// node s mod nodes. The ids are walked from base upwards and each is
// taken by its home node while that node still needs users: the ids used
// lie in base..base+~(size·units), a few percent more than a run without a
// cluster uses.
func placeUnits(base uint64, units, size, spanning, nodes int) (placement, error) {
	switch {
	case nodes < 1 || nodes > maxClusterNodes:
		return placement{}, fmt.Errorf("bench: a cluster of %d nodes: want 1..%d", nodes, maxClusterNodes)
	case units < 1 || size < 2:
		return placement{}, fmt.Errorf("bench: %d units of %d users: want at least one unit of two", units, size)
	case spanning < 0 || spanning > units:
		return placement{}, fmt.Errorf("bench: %d spanning units of %d", spanning, units)
	case spanning > 0 && nodes < 2:
		return placement{}, fmt.Errorf("bench: units spanning nodes need at least two nodes")
	}
	// The nodes of each user, first.
	homes := make([]int, 0, size*units)
	need := make([]int, nodes)
	xs, ss := 0, 0 // spanning and one-node units placed so far
	for u := range units {
		for j := range size {
			var h int
			switch {
			case (u+1)*spanning/units == u*spanning/units:
				h = ss % nodes
			case size == 2 && j == 1:
				h = (xs + 1 + (xs/nodes)%(nodes-1)) % nodes
			default:
				h = (xs + j) % nodes
			}
			homes = append(homes, h)
			need[h]++
		}
		if (u+1)*spanning/units > u*spanning/units {
			xs++
		} else {
			ss++
		}
	}
	// Then the ids: each node's, in the order they come.
	ids := make([]uint32, nodes)
	for i := range ids {
		ids[i] = uint32(i + 1)
	}
	byNode := make([][]uint64, nodes)
	left := len(homes)
	// Each node wins about 1/nodes of the ids and needs about 1/nodes of
	// the users: the walk takes a few percent more ids than users. The
	// bound only stops a broken home function from walking for ever.
	limit := base + uint64(16*len(homes)+1024)
	for id := base; left > 0; id++ {
		if id >= limit {
			return placement{}, fmt.Errorf("bench: walked ids %d..%d and still miss %d users for the nodes", base, limit, left)
		}
		h := int(home.Of(id, ids)) - 1
		if len(byNode[h]) < need[h] {
			byNode[h] = append(byNode[h], id)
			left--
		}
	}
	p := placement{users: make([]uint64, len(homes)), homes: homes, size: size, spanning: spanning}
	next := make([]int, nodes)
	for i, h := range homes {
		p.users[i] = byNode[h][next[h]]
		next[h]++
	}
	return p, nil
}

// maxClusterNodes bounds --cluster-nodes as cluster.MaxNodes bounds a
// cluster's node list (restated: bench does not import cluster).
const maxClusterNodes = 64

// clusterNote says how a cluster run's units are placed on its nodes.
func clusterNote(cfg *Config, servers []Target, p placement) string {
	units, _ := cfg.shape()
	perNode := make([]int, len(servers))
	for _, h := range p.homes {
		perNode[h]++
	}
	var b strings.Builder
	if cfg.Scenario == "group" {
		fmt.Fprintf(&b, "a cluster of %d nodes (--addr in node order 1..%d); %d groups of %d members, %d spanning nodes",
			len(servers), len(servers), units, p.size, p.spanning)
		if p.spanning > 0 {
			fmt.Fprintf(&b, " (member j of the x-th on node (x+j) mod %d: each one's members homed on %d nodes)", len(servers), min(p.size, len(servers)))
		}
		fmt.Fprintf(&b, " and %d with all their members on one node; each user logs in to its home node:", units-p.spanning)
	} else {
		fmt.Fprintf(&b, "a cluster of %d nodes (--addr in node order 1..%d); %d pairs, %d cross-node (their two users homed on different nodes: every message and receipt crosses between nodes) and %d same-node; each user logs in to its home node:",
			len(servers), len(servers), units, p.spanning, units-p.spanning)
	}
	for i, t := range servers {
		sep := ","
		if i == len(servers)-1 {
			sep = ""
		}
		fmt.Fprintf(&b, " node %d %s %s%s", i+1, t.Addr, formatConns(perNode[i]), sep)
	}
	return b.String()
}
