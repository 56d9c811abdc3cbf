package main

import (
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"switchboard/cluster"
	"switchboard/internal/testutil"
)

// TestClusterRouteCut: three `serve` processes use an external NATS
// cluster of two servers in the test's process, node 1 on one and nodes 2
// and 3 on the other, routed through a TCP proxy. Under a steady load in
// every direction the proxy first drops what flows back to node 1 (nodes
// 2 and 3 store node 1's SENDs, and their ACCEPTs are lost) until node 1
// sees them down, then cuts the route (closes its connections and refuses
// new ones), and later restores it. While it is cut, node 1 and
// nodes 2 and 3 see each other down, sends across the cut are refused
// RETRY_LATER (none ACCEPTed once the cut is seen), and sends between nodes
// 2 and 3 go on being ACCEPTed. After the route is back, the senders resend
// what was refused, with flag B, until it is ACCEPTed; every ACCEPTed
// message is delivered once, in order per sender: a message stored across
// the cut whose ACCEPT was lost is deduplicated at its home (counted by its
// switchboard_duplicates_total), not stored twice.
func TestClusterRouteCut(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three server processes and two NATS servers")
	}
	a := testutil.FreeAddrs(t, 4)
	clientA, routeA, clientB, routeB := a[0], a[1], a[2], a[3]
	toB := newCutProxy(t, routeB) // A dials B through it
	toA := newCutProxy(t, routeA) // and B would dial A through this one
	stopB, err := cluster.StartNATS(cluster.NATSOptions{Name: "clf-nats", Client: clientB, Route: routeB, Advertise: toB.addr()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stopB)
	stopA, err := cluster.StartNATS(cluster.NATSOptions{Name: "clf-nats", Client: clientA, Route: routeA, Advertise: toA.addr(), Routes: []string{toB.addr()}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stopA)

	cp := newClusterProcs(t, []string{"nats://" + clientA, "nats://" + clientB, "nats://" + clientB})
	r1on := cp.userOn(1, 1000)
	r1off := cp.userOn(1, r1on+1)
	r2on := cp.userOn(2, 2000)
	r3off := cp.userOn(3, 3000)
	rcpts := []uint64{r1on, r1off, r2on, r3off}
	s := newStorm(t, cp, func(from, to uint32) bool { return (from == 1) != (to == 1) }, rcpts)
	c1, done1 := s.online(r1on)
	c2, done2 := s.online(r2on)
	for _, u := range []uint64{cp.userOn(1, 5000), cp.userOn(1, 6000), cp.userOn(2, 7000), cp.userOn(3, 8000)} {
		s.addSender(u, rcpts)
	}

	s.waitAccepted("the load", 300, 75, 30*time.Second)
	down1, down2 := cp.logCount(1, peerLine("down", 2)), cp.logCount(2, peerLine("down", 1))
	up1 := cp.logCount(1, peerLine("up", 2))
	dups := cp.metric(2, "switchboard_duplicates_total") + cp.metric(3, "switchboard_duplicates_total")
	s.fault()
	cut := time.Now()
	// First one way only: node 1's SENDs still reach nodes 2 and 3, which
	// store them, and their ACCEPTs are lost, until the route's pings close
	// it; then both ways.
	toB.setOneWay(true)
	seen1 := cp.waitLog(1, peerLine("down", 2), down1, 10*time.Second).Sub(cut)
	toB.setCut(true)
	toA.setCut(true)
	seen2 := cp.waitLog(2, peerLine("down", 1), down2, 10*time.Second).Sub(cut)
	s.waitQuiet(20 * time.Second)
	s.waitCross(10 * time.Second)
	if s.refused() == 0 {
		t.Fatal("no send across the cut was refused")
	}
	// The cut's checks end here: once the route is back, sends across it
	// are ACCEPTed again, from the first moment the nodes hear each other.
	s.repaired()
	restored := time.Now()
	toB.setOneWay(false)
	toB.setCut(false)
	toA.setCut(false)
	back := cp.waitLog(1, peerLine("up", 2), up1, 10*time.Second).Sub(restored)
	s.waitAccepted("after the route is back", 150, 75, 30*time.Second)
	t.Logf("route cut: node 2 seen down by node 1 after %v, node 1 by node 2 after %v; restored, seen up by node 1 in %v; %s",
		seen1.Round(10*time.Millisecond), seen2.Round(10*time.Millisecond), back.Round(10*time.Millisecond), s.report())
	s.finish(30 * time.Second)
	c1.Close()
	c2.Close()
	<-done1
	<-done2
	s.drain()
	all, across := s.total()
	dups = cp.metric(2, "switchboard_duplicates_total") + cp.metric(3, "switchboard_duplicates_total") - dups
	if dups == 0 {
		t.Fatal("no resend was deduplicated at nodes 2 and 3: no SEND stored across the cut lost its ACCEPT")
	}
	t.Logf("%d ACCEPTed (%d across the cut), every one delivered once, in order; %.0f resends answered from the dedupe record at nodes 2 and 3", all, across, dups)
}

// cutProxy forwards TCP connections to target until it is cut: cutting
// closes every connection it carries and refuses new ones until restored.
type cutProxy struct {
	t      *testing.T
	ln     net.Listener
	target string
	wg     sync.WaitGroup // the accept loop and the copiers

	oneWay atomic.Bool // bytes from target back to the dialer are dropped

	mu    sync.Mutex
	cut   bool       // guarded by mu
	conns []net.Conn // guarded by mu; both ends of every forwarded connection
}

func newCutProxy(t *testing.T, target string) *cutProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{t: t, ln: ln, target: target}
	p.wg.Go(p.accept)
	t.Cleanup(func() {
		ln.Close()
		p.setCut(true)
		p.wg.Wait()
	})
	return p
}

func (p *cutProxy) addr() string { return p.ln.Addr().String() }

func (p *cutProxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		cut := p.cut
		p.mu.Unlock()
		if cut {
			c.Close()
			continue
		}
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		if p.cut {
			c.Close()
			up.Close()
		} else {
			p.conns = append(p.conns, c, up)
			p.wg.Go(func() { io.Copy(up, c); up.Close(); c.Close() })
			p.wg.Go(func() { p.back(c, up); up.Close(); c.Close() })
		}
		p.mu.Unlock()
	}
}

// back copies what target sends to the dialer, dropping it while the
// proxy is one way.
func (p *cutProxy) back(c, up net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := up.Read(buf)
		if n > 0 && !p.oneWay.Load() {
			if _, werr := c.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// setOneWay drops (or passes again) every byte from target to the dialer,
// on the connections it carries and new ones.
func (p *cutProxy) setOneWay(on bool) { p.oneWay.Store(on) }

// setCut cuts the route (closing what it carries) or restores it.
func (p *cutProxy) setCut(cut bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = cut
	if cut {
		for _, c := range p.conns {
			c.Close()
		}
		p.conns = nil
	}
}
