package node

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"

	"switchboard/cluster"
)

// peers is a cluster as delivery sees it (delivery.Peers). Homes are a
// function of the configuration, so it answers them before the cluster has
// started; Send fails until it has.
type peers struct {
	cfg cluster.Config
	cl  atomic.Pointer[cluster.Cluster]
}

// join makes this node's side of the cluster, with handler for the
// payloads, and joins it. The peers answer through it from before it
// joins: payloads held while it joins are handed to handler once it has,
// and their answers must not find Send refusing for want of a cluster
// (the senders would wait out their timeout). A cluster that failed to
// join is forgotten.
func (p *peers) join(handler func(from uint32, payload []byte)) (*cluster.Cluster, error) {
	cl, err := cluster.New(p.cfg, handler)
	if err != nil {
		return nil, err
	}
	p.cl.Store(cl)
	if err := cl.Join(); err != nil {
		p.cl.Store(nil)
		return nil, err
	}
	return cl, nil
}

func (p *peers) Self() uint32          { return p.cfg.Self }
func (p *peers) Home(id uint64) uint32 { return p.cfg.Home(id) }

func (p *peers) Instance(node uint32) uint64 {
	if cl := p.cl.Load(); cl != nil {
		return cl.Instance(node)
	}
	return 0
}

func (p *peers) Leaving(node uint32) bool {
	cl := p.cl.Load()
	return cl != nil && cl.Leaving(node)
}

func (p *peers) Send(node uint32, payload []byte) bool {
	cl := p.cl.Load()
	return cl != nil && cl.Send(node, payload)
}

// homeAddr returns the gateway's HomeAddr for cfg: a login of a user homed
// on another node is redirected to that node's client address.
func homeAddr(cfg cluster.Config) func(user uint64) string {
	addrs := make(map[uint32]string, len(cfg.Nodes))
	for _, n := range cfg.Nodes {
		addrs[n.ID] = n.Client
	}
	return func(user uint64) string {
		if h := cfg.Home(user); h != cfg.Self {
			return addrs[h]
		}
		return ""
	}
}

// clustered reports whether c makes this process a node of a cluster.
func (c Config) clustered() bool { return c.Cluster.Name != "" }

// formatNodes writes a node list as the cluster-nodes setting reads it:
// id=client/route/nats, comma separated, in id order.
func formatNodes(nodes []cluster.NodeAddr) string {
	parts := make([]string, 0, len(nodes))
	for _, n := range nodes {
		parts = append(parts, fmt.Sprintf("%d=%s/%s/%s", n.ID, n.Client, n.Route, n.NATS))
	}
	return strings.Join(parts, ",")
}

// parseNodes reads a cluster-nodes value: id=client/route/nats, comma
// separated; route and nats may be empty with an external NATS.
func parseNodes(v string) ([]cluster.NodeAddr, error) {
	if v == "" {
		return nil, nil
	}
	var nodes []cluster.NodeAddr
	var errs []error
	for part := range strings.SplitSeq(v, ",") {
		part = strings.TrimSpace(part)
		id, addrs, ok := strings.Cut(part, "=")
		n, err := strconv.ParseUint(strings.TrimSpace(id), 10, 32)
		a := strings.Split(addrs, "/")
		if !ok || err != nil || len(a) != 3 {
			errs = append(errs, fmt.Errorf("%q: want id=client/route/nats", part))
			continue
		}
		nodes = append(nodes, cluster.NodeAddr{ID: uint32(n), Client: a[0], Route: a[1], NATS: a[2]})
	}
	return nodes, errors.Join(errs...)
}
