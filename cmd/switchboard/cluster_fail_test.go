package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"switchboard/cluster"
	"switchboard/internal/testutil"
	"switchboard/protocol"
	"switchboard/token"
)

// This file holds the cluster's failure tests: three `serve` child
// processes over real NATS and Badger, a storm of 1:1 sends across nodes,
// and a fault in the middle of it (a node killed with SIGKILL, or the NATS
// route between two nodes cut). The senders keep an outbox as a careful
// client does: explicit msg ids, a refused message resent with flag B
// after its retry_after, and nothing new to a recipient while an earlier
// message to it waits to be resent, so that order per sender holds.

// clusterProcs is three `serve` children, nodes 1..3 of one cluster, with
// one keys file copied into every data folder.
type clusterProcs struct {
	t     *testing.T
	cfg   cluster.Config // Self unset
	dirs  []string
	nats  []string // node i's --cluster-nats; nil: every node embeds NATS
	admin []string // node i's --metrics address

	mu    sync.Mutex
	procs []*child // guarded by mu; index i is node i+1
}

func newClusterProcs(t *testing.T, nats []string) *clusterProcs {
	t.Helper()
	a := testutil.FreeAddrs(t, 12)
	cp := &clusterProcs{t: t, cfg: cluster.Config{Name: "clf"}, nats: nats, admin: a[9:], procs: make([]*child, 3)}
	for i := range 3 {
		n := cluster.NodeAddr{ID: uint32(i + 1), Client: a[3*i]}
		if nats == nil {
			n.Route, n.NATS = a[3*i+1], a[3*i+2]
		}
		cp.cfg.Nodes = append(cp.cfg.Nodes, n)
		cp.dirs = append(cp.dirs, t.TempDir())
	}
	if _, _, err := loadKeys(cp.dirs[0], true); err != nil {
		t.Fatal(err)
	}
	keys, err := os.ReadFile(filepath.Join(cp.dirs[0], token.FileName))
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range cp.dirs[1:] {
		if err := os.WriteFile(filepath.Join(d, token.FileName), keys, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	for i := range 3 {
		wg.Go(func() { cp.start(uint32(i + 1)) }) // a node waits for its peers' heartbeats
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	return cp
}

// start runs node id on its folder and addresses.
func (cp *clusterProcs) start(id uint32) {
	var list []string
	for _, n := range cp.cfg.Nodes {
		list = append(list, fmt.Sprintf("%d=%s/%s/%s", n.ID, n.Client, n.Route, n.NATS))
	}
	args := []string{"--listen", cp.cfg.Nodes[id-1].Client, "--metrics", cp.admin[id-1], "--loops", "1",
		"--cluster-name", cp.cfg.Name, "--cluster-node", strconv.Itoa(int(id)), "--cluster-nodes", strings.Join(list, ",")}
	if cp.nats != nil {
		args = append(args, "--cluster-nats", cp.nats[id-1])
	}
	c := startChild(cp.t, cp.dirs[id-1], 0, args...)
	cp.mu.Lock()
	cp.procs[id-1] = c
	cp.mu.Unlock()
}

func (cp *clusterProcs) node(id uint32) *child {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	return cp.procs[id-1]
}

// metric returns the value of the counter or gauge name (without labels)
// on node id's /metrics.
func (cp *clusterProcs) metric(id uint32, name string) float64 {
	cp.t.Helper()
	resp, err := http.Get("http://" + cp.admin[id-1] + "/metrics")
	if err != nil {
		cp.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		cp.t.Fatal(err)
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				cp.t.Fatalf("node %d: %s: %v", id, line, err)
			}
			return f
		}
	}
	cp.t.Fatalf("node %d has no metric %s", id, name)
	return 0
}

// userOn returns the first user id from start up homed on node id.
func (cp *clusterProcs) userOn(id uint32, start uint64) uint64 {
	for u := start; ; u++ {
		if cp.cfg.Home(u) == id {
			return u
		}
	}
}

// logCount returns how many lines of node id's log hold every one of the
// parts of s, separated by "|".
func (cp *clusterProcs) logCount(id uint32, s string) int {
	parts := strings.Split(s, "|")
	n := 0
	for line := range strings.Lines(cp.node(id).log()) {
		line = strings.TrimSuffix(line, "\n") + " " // a field ends with a space
		all := true
		for _, p := range parts {
			all = all && strings.Contains(line, p)
		}
		if all {
			n++
		}
	}
	return n
}

// waitLog waits until node id's log holds more than n lines with s and
// returns when it saw them.
func (cp *clusterProcs) waitLog(id uint32, s string, n int, within time.Duration) time.Time {
	cp.t.Helper()
	deadline := time.Now().Add(within)
	for cp.logCount(id, s) <= n {
		if time.Now().After(deadline) {
			cp.t.Fatalf("node %d did not log %q in %v\n%s", id, s, within, cp.logs())
		}
		time.Sleep(10 * time.Millisecond)
	}
	return time.Now()
}

// peerLine is how a node logs a peer's transition (cluster/cluster.go).
func peerLine(transition string, peer uint32) string {
	return fmt.Sprintf(`msg="cluster: node %s"| peer=%d `, transition, peer)
}

// logs returns every node's log, for a failure message.
func (cp *clusterProcs) logs() string {
	var b strings.Builder
	for i := range 3 {
		if c := cp.node(uint32(i + 1)); c != nil {
			fmt.Fprintf(&b, "--- node %d ---\n%s", i+1, lastLines(c.log(), 40))
		}
	}
	return b.String()
}

func lastLines(s string, lines int) string {
	ls := strings.Split(s, "\n")
	if len(ls) > lines {
		ls = ls[len(ls)-lines:]
	}
	return strings.Join(ls, "\n")
}

// Fault phases of a storm.
const (
	phaseBefore = iota // no fault yet
	phaseFault         // the fault is on: a node is dead or a route cut
	phaseAfter         // the fault is repaired
)

// outMsg is a message in a sender's outbox: sent and not yet ACCEPTed.
type outMsg struct {
	to      uint64
	sent    time.Time // its last transmission
	refused bool      // answered with REFUSE; waits to be resent
}

// stormSender is one sender: a user logged in at its home node.
type stormSender struct {
	id   uint64
	home uint32
	to   []uint64 // its recipients, in turn
	c    *protocol.Client

	// Guarded by storm.mu.
	next     uint64             // next new msg id
	turn     int                // index into to of the next new message
	out      map[uint64]*outMsg // msg id → unanswered or refused message
	accepted map[uint64]uint64  // msg id → recipient, ACCEPTed
	retryAt  map[uint64]time.Time
}

// storm runs senders against a cluster and keeps the books of a fault:
// which pairs (sender's home, recipient's home) it cuts, what those and the
// others were answered while it lasted.
type storm struct {
	t        *testing.T
	cp       *clusterProcs
	affected func(from, to uint32) bool // pairs of homes the fault separates
	rcv      *crashState                // what recipients received
	senders  []*stormSender
	wg       sync.WaitGroup // sender goroutines

	mu            sync.Mutex
	phase         int
	faultAt       time.Time
	downSeen      time.Time      // first "unreachable" refusal of an affected pair in the fault
	refusals      map[string]int // affected pairs' refusals in the fault, by reason
	otherRefusals []string       // refusals of unaffected pairs, or not RETRY_LATER: none expected
	lateAccepts   int            // affected pairs ACCEPTed after downSeen, in the fault: none expected
	crossAccepts  int            // unaffected pairs of two nodes ACCEPTed in the fault
	stopNew       bool           // no new messages: only resends
	stopped       bool           // the senders are to return
}

const (
	stormWindow = 32                   // most unanswered messages per sender
	stormPerTo  = 8                    // most unanswered messages per sender and recipient
	stormPace   = 5 * time.Millisecond // a sender's tick: about 200 messages/s
)

func newStorm(t *testing.T, cp *clusterProcs, affected func(from, to uint32) bool, rcpts []uint64) *storm {
	s := &storm{t: t, cp: cp, affected: affected, refusals: map[string]int{},
		rcv: &crashState{recv: map[uint64]map[key]uint64{}, lastSeq: map[uint64]uint64{}}}
	for _, r := range rcpts {
		s.rcv.recv[r] = map[key]uint64{}
	}
	return s
}

// addSender logs user in at its home node and starts its sending and
// reading goroutines.
func (s *storm) addSender(user uint64, to []uint64) {
	s.t.Helper()
	home := s.cp.cfg.Home(user)
	// AutoAck: the recipients' "delivered" receipts are entries of the
	// sender's mailbox; a sender that never ACKs them is closed when its
	// window is full.
	c, err := s.cp.node(home).dial(user, protocol.ClientOptions{AutoAck: true})
	if err != nil {
		s.t.Fatalf("sender %d at node %d: %v", user, home, err)
	}
	snd := &stormSender{id: user, home: home, to: to, c: c, next: 1,
		out: map[uint64]*outMsg{}, accepted: map[uint64]uint64{}, retryAt: map[uint64]time.Time{}}
	s.mu.Lock()
	s.senders = append(s.senders, snd)
	s.mu.Unlock()
	s.wg.Add(2)
	go func() { defer s.wg.Done(); s.read(snd) }()
	go func() { defer s.wg.Done(); s.write(snd) }()
}

// online logs recipient user in at its home and records what it receives
// until the connection ends; done closes then.
func (s *storm) online(user uint64) (c *protocol.Client, done chan struct{}) {
	s.t.Helper()
	s.rcv.mu.Lock()
	ack := s.rcv.lastSeq[user]
	s.rcv.mu.Unlock()
	c, err := s.cp.node(s.cp.cfg.Home(user)).dial(user, protocol.ClientOptions{AutoAck: true, Ack: ack})
	if err != nil {
		s.t.Fatalf("recipient %d: %v", user, err)
	}
	done = make(chan struct{})
	go func() { defer close(done); s.rcv.receive(s.t, user, c) }()
	return c, done
}

func (s *storm) read(snd *stormSender) {
	for {
		ev, err := snd.c.Recv(context.Background())
		if err != nil {
			s.mu.Lock()
			if !s.stopped {
				s.t.Errorf("sender %d: connection to node %d ended mid-storm: %v", snd.id, snd.home, err)
			}
			s.mu.Unlock()
			return
		}
		switch ev := ev.(type) {
		case *protocol.Accept:
			s.mu.Lock()
			for id := ev.MsgID; id <= ev.MsgID+ev.More; id++ {
				m := snd.out[id]
				if m == nil || m.refused {
					s.t.Errorf("sender %d: ACCEPT of msg %d, which waits for no answer", snd.id, id)
					continue
				}
				delete(snd.out, id)
				snd.accepted[id] = m.to
				if s.phase == phaseFault {
					rh := s.cp.cfg.Home(m.to)
					switch {
					case s.affected(snd.home, rh) && !s.downSeen.IsZero():
						s.lateAccepts++
					case !s.affected(snd.home, rh) && rh != snd.home:
						s.crossAccepts++
					}
				}
			}
			s.mu.Unlock()
		case *protocol.Refuse:
			s.mu.Lock()
			m := snd.out[ev.MsgID]
			if m == nil || m.refused {
				s.t.Errorf("sender %d: REFUSE of msg %d, which waits for no answer", snd.id, ev.MsgID)
				s.mu.Unlock()
				continue
			}
			m.refused = true
			rh := s.cp.cfg.Home(m.to)
			snd.retryAt[m.to] = time.Now().Add(time.Duration(ev.RetryAfter) * time.Millisecond)
			switch {
			case ev.Code != protocol.CodeRetryLater || ev.RetryAfter == 0:
				s.otherRefusals = append(s.otherRefusals, fmt.Sprintf("%d→%d msg %d: %v after %d ms: %s", snd.id, m.to, ev.MsgID, ev.Code, ev.RetryAfter, ev.Reason))
			case !s.affected(snd.home, rh) || s.phase == phaseBefore:
				s.otherRefusals = append(s.otherRefusals, fmt.Sprintf("%d→%d msg %d (phase %d): %s", snd.id, m.to, ev.MsgID, s.phase, ev.Reason))
			case s.phase == phaseFault:
				s.refusals[ev.Reason]++
				if s.downSeen.IsZero() && strings.Contains(ev.Reason, "unreachable") {
					s.downSeen = time.Now()
				}
			default:
				s.refusals["after the repair: "+ev.Reason]++
			}
			s.mu.Unlock()
		}
	}
}

// write sends on every tick: the oldest refused message of a recipient
// once its retry_after passed and nothing else to it is unanswered, or
// else a new message to the next recipient that has nothing to resend.
func (s *storm) write(snd *stormSender) {
	tick := time.NewTicker(stormPace)
	defer tick.Stop()
	for range tick.C {
		s.mu.Lock()
		if s.stopped {
			s.mu.Unlock()
			return
		}
		unanswered := map[uint64]int{}
		first := map[uint64]uint64{} // recipient → lowest refused msg id
		n := 0
		for id, m := range snd.out {
			if !m.refused {
				unanswered[m.to]++
				n++
			} else if f, ok := first[m.to]; !ok || id < f {
				first[m.to] = id
			}
		}
		var resend []key // from: the recipient
		now := time.Now()
		for to, id := range first {
			if unanswered[to] == 0 && !now.Before(snd.retryAt[to]) {
				m := snd.out[id]
				m.refused, m.sent = false, now
				resend = append(resend, key{from: to, id: id})
			}
		}
		var fresh uint64
		var freshTo uint64
		if !s.stopNew && n+len(resend) < stormWindow {
			for range snd.to {
				to := snd.to[snd.turn%len(snd.to)]
				snd.turn++
				if _, blocked := first[to]; !blocked && unanswered[to] < stormPerTo {
					fresh, freshTo = snd.next, to
					snd.next++
					snd.out[fresh] = &outMsg{to: to, sent: now}
					break
				}
			}
		}
		s.mu.Unlock()
		for _, r := range resend {
			if snd.c.Resend(r.id, r.from, stormBody(snd.id, r.id), false) != nil {
				return
			}
		}
		if fresh != 0 {
			if snd.c.SendID(fresh, freshTo, stormBody(snd.id, fresh), false) != nil {
				return
			}
		}
	}
}

func stormBody(from, id uint64) []byte { return []byte(fmt.Sprintf("%d says %d", from, id)) }

// total returns how many messages are ACCEPTed, and how many of those
// between affected pairs.
func (s *storm) total() (all, affected int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, snd := range s.senders {
		all += len(snd.accepted)
		for _, to := range snd.accepted {
			if s.affected(snd.home, s.cp.cfg.Home(to)) {
				affected++
			}
		}
	}
	return all, affected
}

// waitAccepted waits until n more messages, m more of them between
// affected pairs, are ACCEPTed.
func (s *storm) waitAccepted(what string, n, m int, within time.Duration) {
	s.t.Helper()
	all0, aff0 := s.total()
	deadline := time.Now().Add(within)
	for {
		all, aff := s.total()
		if all >= all0+n && aff >= aff0+m {
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("%s: %d more ACCEPTed (%d between the fault's pairs) in %v, want %d (%d); senders: %s\n%s", what, all-all0, aff-aff0, within, n, m, s.outboxes(), s.cp.logs())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// outboxes describes every sender's outbox, for a failure message.
func (s *storm) outboxes() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var b strings.Builder
	now := time.Now()
	for _, snd := range s.senders {
		fmt.Fprintf(&b, "\n  %d (node %d, next id %d):", snd.id, snd.home, snd.next)
		ids := make([]uint64, 0, len(snd.out))
		for id := range snd.out {
			ids = append(ids, id)
		}
		sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
		for _, id := range ids {
			m := snd.out[id]
			fmt.Fprintf(&b, " %d→%d(refused %v, %v ago)", id, m.to, m.refused, now.Sub(m.sent).Round(time.Millisecond))
		}
	}
	return b.String()
}

// fault marks the fault as on, from now, and starts its books afresh.
func (s *storm) fault() {
	s.mu.Lock()
	s.phase, s.faultAt, s.downSeen = phaseFault, time.Now(), time.Time{}
	s.refusals, s.crossAccepts = map[string]int{}, 0
	s.mu.Unlock()
}

// waitCross waits until a message between two nodes the fault does not
// separate is ACCEPTed during the fault.
func (s *storm) waitCross(within time.Duration) {
	s.t.Helper()
	deadline := time.Now().Add(within)
	for {
		s.mu.Lock()
		n := s.crossAccepts
		s.mu.Unlock()
		if n > 0 {
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("no message between the nodes the fault leaves alone was ACCEPTed in %v\n%s", within, s.cp.logs())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// refused returns how many refusals across the fault it has counted.
func (s *storm) refused() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, c := range s.refusals {
		n += c
	}
	return n
}

// waitQuiet waits until the fault is seen (an affected pair refused as
// unreachable) and every message between affected pairs sent before that
// is answered: nothing is in transit towards the other side any more.
func (s *storm) waitQuiet(within time.Duration) {
	s.t.Helper()
	deadline := time.Now().Add(within)
	for {
		s.mu.Lock()
		seen := s.downSeen
		busy := seen.IsZero()
		for _, snd := range s.senders {
			for _, m := range snd.out {
				if !m.refused && s.affected(snd.home, s.cp.cfg.Home(m.to)) && m.sent.Before(seen) {
					busy = true
				}
			}
		}
		s.mu.Unlock()
		if !busy {
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("the fault was not seen, or forwarded messages stayed unanswered, for %v\n%s", within, s.cp.logs())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// repaired marks the fault as over.
func (s *storm) repaired() {
	s.mu.Lock()
	s.phase = phaseAfter
	s.mu.Unlock()
}

// finish stops new messages, resends until every sent message is
// ACCEPTed, and stops the senders.
func (s *storm) finish(within time.Duration) {
	s.t.Helper()
	s.mu.Lock()
	s.stopNew = true
	s.mu.Unlock()
	deadline := time.Now().Add(within)
	for {
		s.mu.Lock()
		left := 0
		for _, snd := range s.senders {
			left += len(snd.out)
		}
		s.mu.Unlock()
		if left == 0 {
			break
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("%d messages not ACCEPTed %v after the senders stopped sending new ones\n%s", left, within, s.cp.logs())
		}
		time.Sleep(10 * time.Millisecond)
	}
	s.mu.Lock()
	s.stopped = true
	s.mu.Unlock()
	for _, snd := range s.senders {
		snd.c.Close()
	}
	s.wg.Wait()
}

// drain logs every recipient in at its home and reads its mailbox to the
// end, then checks the books: every ACCEPTed message delivered, one seq per
// (sender, msg id), in order of msg ids per sender in every mailbox.
func (s *storm) drain() {
	s.t.Helper()
	for rcpt := range s.rcv.recv {
		s.rcv.mu.Lock()
		ack := s.rcv.lastSeq[rcpt]
		s.rcv.mu.Unlock()
		c, err := s.cp.node(s.cp.cfg.Home(rcpt)).dial(rcpt, protocol.ClientOptions{AutoAck: true, Ack: ack})
		if err != nil {
			s.t.Fatalf("recipient %d draining: %v", rcpt, err)
		}
		last := c.Welcome().Last
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		for {
			s.rcv.mu.Lock()
			at := s.rcv.lastSeq[rcpt]
			s.rcv.mu.Unlock()
			if at >= last {
				break
			}
			ev, err := c.Recv(ctx)
			if err != nil {
				cancel()
				s.t.Fatalf("recipient %d draining to seq %d, at %d: %v", rcpt, last, at, err)
			}
			if d, ok := ev.(*protocol.Deliver); ok {
				s.rcv.record(s.t, rcpt, d)
			}
		}
		cancel()
		c.Close()
	}

	lost := 0
	for _, snd := range s.senders {
		for id, to := range snd.accepted {
			if _, ok := s.rcv.recv[to][key{snd.id, id}]; !ok {
				if lost < 10 {
					s.t.Errorf("sender %d (node %d) msg %d to %d (node %d) was ACCEPTed and never delivered", snd.id, snd.home, id, to, s.cp.cfg.Home(to))
				}
				lost++
			}
		}
	}
	if lost > 0 {
		s.t.Fatalf("%d ACCEPTed messages lost", lost)
	}
	for rcpt, got := range s.rcv.recv {
		type del struct{ seq, from, id uint64 }
		var ds []del
		for k, seq := range got {
			ds = append(ds, del{seq, k.from, k.id})
		}
		sort.Slice(ds, func(i, j int) bool { return ds[i].seq < ds[j].seq })
		prev := map[uint64]uint64{}
		for i, d := range ds {
			if i > 0 && ds[i-1].seq == d.seq {
				s.t.Fatalf("recipient %d: seq %d holds two messages", rcpt, d.seq)
			}
			if d.id <= prev[d.from] {
				s.t.Fatalf("recipient %d: sender %d's msg %d at seq %d after msg %d", rcpt, d.from, d.id, d.seq, prev[d.from])
			}
			prev[d.from] = d.id
		}
	}
	if len(s.otherRefusals) > 0 {
		s.t.Fatalf("%d unexpected refusals, first: %s", len(s.otherRefusals), s.otherRefusals[0])
	}
	if s.lateAccepts > 0 {
		s.t.Fatalf("%d messages across the fault ACCEPTed after it was seen", s.lateAccepts)
	}
}

// report returns the fault's figures for the log.
func (s *storm) report() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, c := range s.refusals {
		n += c
	}
	return fmt.Sprintf("first refusal as unreachable %v after the fault; %d refusals across it (%v); %d ACCEPTs between the other nodes meanwhile; %d redeliveries dropped by the client",
		s.downSeen.Sub(s.faultAt).Round(10*time.Millisecond), n, s.refusals, s.crossAccepts, s.rcv.dupes)
}
