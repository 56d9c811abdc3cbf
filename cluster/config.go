package cluster

import (
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"switchboard/home"
)

// NodeAddr is one node of the cluster.
type NodeAddr struct {
	ID     uint32 // 1..N, unique, stable: a node's identity (mailbox homes are assigned by it)
	Client string // host:port clients dial (the node's gateway listener), for redirects
	Route  string // host:port of its embedded NATS server's cluster (route) listener
	NATS   string // host:port of its embedded NATS server's client listener
}

// Config is a node's view of the cluster. Every node is started with the
// same Name and Nodes (Hash tells); Self, External, Heartbeat, DownAfter
// and Logger are the node's own.
type Config struct {
	// Name is the cluster's name, the same on every node; it is the NATS
	// cluster name too and a token of every subject, so it is letters,
	// digits, '-' and '_' only, at most 64 of them. Required.
	Name string
	// Self is this node's ID, one of Nodes. Required.
	Self uint32
	// Nodes is every node, the same list on every node (order-insensitive),
	// at most MaxNodes.
	Nodes []NodeAddr
	// External, when not empty, is the URL list of an existing NATS cluster
	// to join as a client instead of embedding a server
	// (nats://host:port,...). Route and NATS of every node are then unused
	// and may be empty. Empty: this node embeds a NATS server on its NATS
	// and Route addresses, routed to every other node's Route.
	External string
	// Keys are the token keys (by id), the same file on every node. The
	// embedded NATS server admits only routes and clients that prove they
	// hold one of them, and this node proves its newest (auth.go).
	// Required unless External; they are not part of Hash.
	Keys map[uint32][]byte
	// Heartbeat is how often this node announces itself on the control
	// subject. Zero means DefaultHeartbeat.
	Heartbeat time.Duration
	// DownAfter is how long a node may go without a sign of life (a
	// matching heartbeat, or a payload while it is up) before it is down. Zero
	// means DownAfterFor(Heartbeat). At least twice Heartbeat, so that one
	// late heartbeat does not take a node down.
	DownAfter time.Duration
	// Logger receives up/down transitions and mismatches; nil discards.
	Logger *slog.Logger
}

const (
	// DefaultHeartbeat is the heartbeat interval: eight heartbeats per
	// DownAfter, so that a node is taken down only after several in a row
	// were missed, for 4 small messages a second per node.
	DefaultHeartbeat = 250 * time.Millisecond
	// DefaultDownAfter is how long a silent node stays up at the default
	// heartbeat: a dead node is noticed in about 2 seconds, and a
	// garbage-collection pause or a busy route does not flap a live one.
	DefaultDownAfter = 2 * time.Second
	// heartbeatsPerDownAfter is how many heartbeats a node may miss in a
	// row, at the least, before it is down when DownAfter is left to its
	// default (DownAfterFor).
	heartbeatsPerDownAfter = int64(DefaultDownAfter / DefaultHeartbeat)
	// MaxNodes bounds the node list: every node routes to every other one,
	// and a heartbeat carries the whole list (about 60 bytes a node).
	MaxNodes = 64
	// maxNameLen bounds the cluster name, which is in every subject.
	maxNameLen = 64
)

// DownAfterFor returns the default DownAfter for a heartbeat interval:
// DefaultDownAfter, or eight heartbeats when that is longer, so that a
// heartbeat lengthened for a large cluster keeps the same margin.
func DownAfterFor(heartbeat time.Duration) time.Duration {
	return max(DefaultDownAfter, time.Duration(heartbeatsPerDownAfter)*heartbeat)
}

// withDefaults returns c with its zero fields filled.
func (c Config) withDefaults() Config {
	if c.Heartbeat == 0 {
		c.Heartbeat = DefaultHeartbeat
	}
	if c.DownAfter == 0 {
		c.DownAfter = DownAfterFor(c.Heartbeat)
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Validate reports every problem of c at once (errors.Join), with defaults
// applied first.
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf("cluster: "+format, a...)) }

	if c.Name == "" {
		bad("name is empty")
	} else if len(c.Name) > maxNameLen || strings.IndexFunc(c.Name, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_')
	}) >= 0 {
		bad("name %q: want at most %d letters, digits, '-' or '_'", c.Name, maxNameLen)
	}
	if len(c.Nodes) == 0 {
		bad("no nodes")
	}
	if len(c.Nodes) > MaxNodes {
		bad("%d nodes, at most %d", len(c.Nodes), MaxNodes)
	}
	ids := make(map[uint32]bool, len(c.Nodes))
	addrs := make(map[string]uint32, 3*len(c.Nodes))
	for i, n := range c.Nodes {
		if n.ID == 0 {
			bad("node #%d: id 0; ids start at 1", i+1)
		} else if ids[n.ID] {
			bad("node id %d listed twice", n.ID)
		}
		ids[n.ID] = true
		// Client and route addresses are dialled by others, so no two
		// nodes share one; a NATS address is dialled only by its own node
		// and may be the same loopback address on every host.
		check := func(field, addr string, required, unique bool) {
			switch {
			case addr == "" && !required:
				return
			case addr == "" && field != "client":
				bad("node %d: no %s address: each of Nodes is id=client/route/nats, and route and nats are left empty only with External", n.ID, field)
				return
			}
			if err := checkHostPort(addr); err != nil {
				bad("node %d: %s address %q: %v", n.ID, field, addr, err)
				return
			}
			if other, dup := addrs[addr]; dup && unique {
				bad("node %d: %s address %s is also node %d's", n.ID, field, addr, other)
			}
			if unique {
				addrs[addr] = n.ID
			}
		}
		check("client", n.Client, true, true)
		check("route", n.Route, c.External == "", true)
		check("nats", n.NATS, c.External == "", false)
		if c.External == "" && n.NATS != "" && (n.NATS == n.Route || n.NATS == n.Client) {
			bad("node %d: nats address %s is also its own client or route address: each of Nodes listens on three", n.ID, n.NATS)
		}
	}
	if c.External == "" {
		// A nats address is another listener on its host: not another
		// node's client or route address either.
		for _, n := range c.Nodes {
			if other, dup := addrs[n.NATS]; dup && other != n.ID {
				bad("node %d: nats address %s is also node %d's (Nodes)", n.ID, n.NATS, other)
			}
		}
	}
	switch {
	case c.Self == 0:
		bad("Self is not set: want this node's id, one of Nodes'")
	case !ids[c.Self]:
		bad("Self %d is not one of Nodes' ids", c.Self)
	}
	if c.External != "" {
		for _, u := range strings.Split(c.External, ",") {
			p, err := url.Parse(strings.TrimSpace(u))
			if err != nil || (p.Scheme != "nats" && p.Scheme != "tls") || p.Host == "" {
				bad("external url %q: want nats://host:port or tls://host:port", u)
			}
		}
	}
	if c.Heartbeat < 0 || c.DownAfter < 0 {
		bad("heartbeat %v and down-after %v must not be negative", c.Heartbeat, c.DownAfter)
	} else if c.DownAfter < 2*c.Heartbeat {
		bad("down-after %v is under twice the heartbeat %v", c.DownAfter, c.Heartbeat)
	}
	return errors.Join(errs...)
}

// checkHostPort accepts host:port with a port in 1..65535.
func checkHostPort(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if host == "" {
		return errors.New("no host")
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		return fmt.Errorf("port %q is not in 1..65535", port)
	}
	return nil
}

// sorted returns the node list sorted by ID, a copy.
func (c Config) sorted() []NodeAddr {
	nodes := slices.Clone(c.Nodes)
	slices.SortFunc(nodes, func(a, b NodeAddr) int { return int(a.ID) - int(b.ID) })
	return nodes
}

// canonical is what must match across nodes, as text: the name and the
// sorted node list, one node a line. Hash hashes it, and a heartbeat
// carries it so that a mismatch can be named.
func (c Config) canonical() string {
	var b strings.Builder
	b.WriteString(c.Name)
	b.WriteByte('\n')
	for _, n := range c.sorted() {
		fmt.Fprintf(&b, "%d %s %s %s\n", n.ID, n.Client, n.Route, n.NATS)
	}
	return b.String()
}

// Hash is a 64-bit FNV-1a of the cluster name and the sorted node list
// (every field of every node): what must match across nodes. Heartbeats
// carry it; a node that hears another hash refuses to join.
func (c Config) Hash() uint64 {
	h := fnv.New64a()
	h.Write([]byte(c.canonical()))
	return h.Sum64()
}

// Home returns the node that homes mailbox owner id (a user or a group id):
// home.Of over the configured IDs (rendezvous hashing). It depends only on
// id and the set of node IDs, so every node computes the same home, and
// adding a node moves only the ids that the new node wins, about 1/N of
// them, all to the new node. Changing the node list therefore changes
// homes: the mailboxes that move must be moved by the procedure in
// docs/CLUSTER.md, with the cluster stopped. Home returns 0 for an empty
// node list.
func (c Config) Home(id uint64) uint32 {
	// On the stack: Home is on every cross-node SEND's path.
	var buf [MaxNodes]uint32
	ids := buf[:0]
	for _, n := range c.Nodes {
		if len(ids) == len(buf) {
			break // Validate refused more than MaxNodes
		}
		ids = append(ids, n.ID)
	}
	return home.Of(id, ids)
}
