package cluster

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// The client side's tuning (nats.go), on the node's own TCP connection.
const (
	// reconnectWait is the wait between reconnect attempts, which go on
	// forever: the embedded server is in the same process, so a lost
	// connection is a restart of it or a stall, seconds at most.
	reconnectWait = 250 * time.Millisecond
	// flusherTimeout bounds how long one write of the client's 32 KiB
	// buffer to the server may block a Send before the connection is
	// counted as broken (and reconnected).
	flusherTimeout = time.Second
	// connectTimeout bounds the first connection's TCP dial.
	connectTimeout = 2 * time.Second
	// pendingMsgs and pendingBytes bound what the client holds for the
	// handler when it falls behind: past either, NATS drops (counted in
	// Stats.Dropped) rather than grow. Above nats.go's 500,000 so that the
	// 500,000-message burst fits even if the handler stalls for all of it.
	pendingMsgs  = 1 << 20
	pendingBytes = 128 << 20
	// eventsCap bounds the Watch channel; events past it are dropped and
	// counted, never waited for.
	eventsCap = 64
	// maxPayload is the largest payload Send takes: NATS's default 1 MiB
	// message, less the sender's ID in front.
	maxPayload = 1<<20 - 4
	// maxSeenGrain bounds how often the payload path writes a peer's
	// last-seen time: at most once per 5 ms (and per DownAfter/8 when that
	// is shorter) however many payloads arrive, so that hundreds of
	// thousands a second cost a clock read and an atomic load each, while
	// the time lags by 5 ms at most, nothing against DownAfter's 2 s.
	maxSeenGrain = 5 * time.Millisecond
)

// ErrMismatch is the error of a node whose cluster configuration (name or
// node list) differs from a peer's: it refuses to join.
var ErrMismatch = errors.New("cluster: configuration differs from a peer's")

// ErrNodeInUse is the error of a node that hears another process announce
// itself as the same node, with the same configuration: it refuses to join,
// since two processes cannot both be one node.
var ErrNodeInUse = errors.New("cluster: this node's id is in use")

// NodeEvent is a node going up or down, as this node sees it.
type NodeEvent struct {
	Node uint32
	Up   bool
	At   time.Time
}

// Stats are a node's counters since Start.
type Stats struct {
	Sent        uint64 // payloads Send handed to NATS
	SendRefused uint64 // Sends answered false: node down, connection not ready or full
	Received    uint64 // payloads passed to the handler
	Dropped     uint64 // payloads lost before the handler: malformed, unknown sender, or NATS's pending limit
	Events      uint64 // NodeEvents dropped because Watch's channel was full
	Malformed   uint64 // control messages that are not heartbeats (the first is logged)
	PeersDown   uint64 // gauge: other nodes of the configuration not Up now
}

// Cluster is this node's membership of a cluster: its NATS connection (and
// server, when embedded), the liveness of every peer, and the subject of
// each. Its methods are safe for concurrent use.
type Cluster struct {
	// Immutable after construction.
	cfg      Config
	log      *slog.Logger
	hash     uint64
	canon    string
	instance uint64
	epoch    time.Time // heard and seen times are offsets from it, on the monotonic clock
	grain    int64     // nanoseconds: a payload moves a peer's seen time forward by at least this much, or not at all
	control  string
	subjects map[uint32]string // node ID → its subject
	clients  map[uint32]string // node ID → its client address
	peers    map[uint32]*peer  // every node but Self
	handler  func(from uint32, payload []byte)
	srv      *server.Server // nil when External
	nc       *nats.Conn
	sub      *nats.Subscription // this node's subject
	bufs     sync.Pool          // *[]byte, Send's scratch

	// events: sent by the heartbeat loop, received by Watch's caller;
	// cap eventsCap, an event that does not fit is counted and dropped.
	events chan NodeEvent
	// mismatch: sent by the control handler (non-blocking), received by
	// Join while it waits; cap 1.
	mismatch chan error
	// joined is closed when Join succeeded: deliver holds payloads until
	// then.
	joined chan struct{}

	done      chan struct{}
	wg        sync.WaitGroup
	closeOnce sync.Once

	// Atomic; shared with every caller and NATS's goroutines.
	starting                                               atomic.Bool
	sent, refused, received, dropped, lostEvent, malformed atomic.Uint64

	// Atomic; set by Leave.
	leaving atomic.Bool // leaving notices are published in place of heartbeats

	// Atomic; set by tests only.
	quiet atomic.Bool // heartbeats are not published: a live node whose heartbeats are late
}

// peer is what this node knows of another node.
type peer struct {
	// Atomic; written by the control handler, read by everyone.
	heard      atomic.Int64  // 1 + nanoseconds from epoch to its last matching heartbeat; 0 never (for the down log)
	instance   atomic.Uint64 // the instance its last matching heartbeat announced
	mismatched atomic.Bool   // its last heartbeat carried another hash
	left       atomic.Uint64 // the instance whose leaving notice was heard: down until another instance is heard
	// Atomic; written by the control handler and the payload handler
	// (seenPayload), read by everyone.
	seen atomic.Int64 // 1 + nanoseconds from epoch to its last sign of life (heartbeat or payload); 0 never
	// Owned by the heartbeat loop.
	up bool
}

// Start is New and Join: it returns a Cluster that has joined.
func Start(cfg Config, handler func(from uint32, payload []byte)) (*Cluster, error) {
	c, err := New(cfg, handler)
	if err != nil {
		return nil, err
	}
	if err := c.Join(); err != nil {
		return nil, err
	}
	return c, nil
}

// New makes this node's side of the cluster (cfg.Self) without joining it.
// Its Self, Home, Instance, Up and Send work at once (Send refuses every
// node until Join has heard it), so the caller can hand it to what answers
// payloads before Join: a peer that hears this node forwards to it at once,
// and the answers go through Send.
//
// handler is called for every payload published to this node, in order per
// sender node, on one goroutine of the cluster's; it may keep payload. It
// must not block for long: payloads wait for it in a bounded buffer
// (pendingMsgs, pendingBytes), past which they are dropped and counted.
func New(cfg Config, handler func(from uint32, payload []byte)) (*Cluster, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if handler == nil {
		return nil, errors.New("cluster: no handler for payloads")
	}
	if cfg.External == "" && len(cfg.Keys) == 0 {
		return nil, errors.New("cluster: no keys: the embedded NATS server admits only nodes holding the token keys")
	}
	c := &Cluster{
		cfg:      cfg,
		log:      cfg.Logger.With("node", cfg.Self),
		hash:     cfg.Hash(),
		canon:    cfg.canonical(),
		instance: rand.Uint64(),
		epoch:    time.Now(),
		grain:    int64(min(maxSeenGrain, cfg.DownAfter/8)),
		control:  "sb." + cfg.Name + ".control",
		subjects: make(map[uint32]string, len(cfg.Nodes)),
		clients:  make(map[uint32]string, len(cfg.Nodes)),
		peers:    make(map[uint32]*peer, len(cfg.Nodes)),
		handler:  handler,
		events:   make(chan NodeEvent, eventsCap),
		mismatch: make(chan error, 1),
		joined:   make(chan struct{}),
		done:     make(chan struct{}),
	}
	for _, n := range cfg.Nodes {
		c.subjects[n.ID] = "sb." + cfg.Name + ".node." + strconv.FormatUint(uint64(n.ID), 10)
		c.clients[n.ID] = n.Client
		if n.ID != cfg.Self {
			c.peers[n.ID] = &peer{}
		}
	}
	return c, nil
}

// Join starts the embedded NATS server (unless cfg.External), connects to
// NATS over TCP, subscribes to this node's subject and the control subject,
// and publishes heartbeats carrying cfg.Hash, the first once every peer
// was heard or two intervals passed (holdFirstHeartbeat). It returns once
// every peer has been heard from, or after cfg.DownAfter (peers not heard
// are down). It refuses, with an error wrapping ErrMismatch that names both
// hashes and what differs, when a peer's heartbeat carries another hash in
// that time, and with ErrNodeInUse when another process announces itself
// as this node; a mismatch heard later is logged and that peer is treated
// as down. A Cluster that failed to join is closed.
//
// Payloads that arrive while Join waits are held and handed to the handler
// once it has returned nil, in order: the peers that heard this node
// forward to it at once, and another process that turns out to be this
// node must not have stored them. Those held when Join fails are dropped,
// and their senders' timeouts refuse them, retryable.
func (c *Cluster) Join() error {
	var self NodeAddr
	for _, n := range c.cfg.Nodes {
		if n.ID == c.cfg.Self {
			self = n
		}
	}
	addr := c.cfg.External
	if addr == "" {
		srv, err := newServer(c.cfg, self, c.log)
		if err != nil {
			return err
		}
		c.srv = srv
		addr = "nats://" + self.NATS
	}
	c.starting.Store(true)
	if err := c.connect(addr); err != nil {
		c.Close() // a payload held by deliver is dropped
		return err
	}
	c.wg.Add(1)
	go c.heartbeats()
	if err := c.awaitPeers(); err != nil {
		c.Close()
		return err
	}
	close(c.joined)
	return nil
}

// connect dials NATS over TCP (never an in-process pipe: a far node cut
// one as a slow consumer under a burst) and subscribes.
func (c *Cluster) connect(url string) error {
	opts := []nats.Option{
		nats.Name(fmt.Sprintf("switchboard %s node %d", c.cfg.Name, c.cfg.Self)),
		nats.Timeout(connectTimeout),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(reconnectWait),
		// No buffering while reconnecting: Send answers false instead, and
		// delivery refuses the SEND retryable.
		nats.ReconnectBufSize(-1),
		nats.PingInterval(clientPing),
		nats.MaxPingsOutstanding(clientMaxPingsOut),
		nats.FlusherTimeout(flusherTimeout),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			c.log.Error("cluster: NATS", "err", err)
		}),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err == nil {
				return // Close: this node is stopping
			}
			c.log.Warn("cluster: NATS connection lost", "err", err)
		}),
		nats.ReconnectHandler(func(*nats.Conn) { c.log.Info("cluster: NATS connection back") }),
	}
	if c.srv != nil {
		opts = append(opts, nats.UserInfo(c.cfg.credentials()))
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return fmt.Errorf("cluster: connect to NATS at %s: %w", url, err)
	}
	c.nc = nc
	c.sub, err = nc.Subscribe(c.subjects[c.cfg.Self], c.deliver)
	if err == nil {
		err = c.sub.SetPendingLimits(pendingMsgs, pendingBytes)
	}
	if err == nil {
		_, err = nc.Subscribe(c.control, c.heard)
	}
	if err == nil {
		err = nc.Flush()
	}
	if err != nil {
		return fmt.Errorf("cluster: subscribe: %w", err)
	}
	return nil
}

// awaitPeers waits until a mismatch was heard, or DownAfter passed, or
// every peer was heard and then two more heartbeat intervals went by. The
// last wait is for another process running as this node: its heartbeats
// come once a Heartbeat, and nothing says they come before the peers' (with
// no peers listed, the first check would pass at once).
func (c *Cluster) awaitPeers() error {
	defer c.starting.Store(false)
	deadline := time.NewTimer(c.cfg.DownAfter)
	defer deadline.Stop()
	tick := time.NewTicker(c.cfg.Heartbeat / 4)
	defer tick.Stop()
	var allUp time.Time // when every peer was first seen up
	for {
		select {
		case err := <-c.mismatch:
			return err
		case <-deadline.C:
			return nil
		case now := <-tick.C:
			switch {
			case !c.allUp():
				allUp = time.Time{}
			case allUp.IsZero():
				allUp = now
			case now.Sub(allUp) >= 2*c.cfg.Heartbeat:
				return nil
			}
		}
	}
}

// deliver passes a payload to the handler, having counted it as a sign of
// life of its sender. NATS calls it on the subscription's goroutine, in
// order.
func (c *Cluster) deliver(m *nats.Msg) {
	if len(m.Data) < 4 {
		c.dropped.Add(1)
		return
	}
	from := binary.BigEndian.Uint32(m.Data)
	if p := c.peers[from]; p != nil {
		c.seenPayload(p)
	} else if from != c.cfg.Self {
		c.dropped.Add(1)
		return
	}
	select {
	case <-c.joined:
	case <-c.done: // Join failed, or Close
		c.dropped.Add(1)
		return
	}
	c.received.Add(1)
	c.handler(from, m.Data[4:])
}

// seenPayload counts a payload from p as a sign of life, like a heartbeat,
// but only while p is up: heard with a matching heartbeat and seen within
// DownAfter. A payload does not carry its sender's instance or hash, so it
// may keep up what a heartbeat made up and never makes up a node that is
// down, never heard, or mismatched; a restarted node comes back by its
// heartbeat, which announces the new instance. It moves the seen time at
// most once per grain, without a lock or an allocation: it is on the path
// of every payload. Called on the subscription's goroutine.
func (c *Cluster) seenPayload(p *peer) {
	seen := p.seen.Load()
	if seen == 0 {
		return
	}
	now := 1 + int64(time.Since(c.epoch))
	if age := now - seen; age < c.grain || age >= int64(c.cfg.DownAfter) || p.mismatched.Load() {
		return
	}
	// A heartbeat stored in the meantime is as recent: keep it.
	p.seen.CompareAndSwap(seen, now)
}

// heard takes a heartbeat. NATS calls it on the control subscription's
// goroutine.
func (c *Cluster) heard(m *nats.Msg) {
	hb, err := parseHeartbeat(m.Data)
	if err != nil {
		if c.malformed.Add(1) == 1 {
			c.log.Warn("cluster: malformed heartbeat on the control subject (further ones are only counted)", "bytes", len(m.Data))
		}
		return
	}
	if hb.node == c.cfg.Self {
		if hb.instance != c.instance && hb.hash == c.hash {
			c.refuse(fmt.Errorf("%w: another process already runs as node %d (another data folder or host started with the same cluster-node); stop one of them", ErrNodeInUse, hb.node), nil)
		}
		return
	}
	p := c.peers[hb.node]
	if hb.hash != c.hash {
		err := fmt.Errorf("%w: node %d has config hash %016x, this node (%d) %016x", ErrMismatch, hb.node, hb.hash, c.cfg.Self, c.hash)
		if d := describeDiff(c.canon, string(hb.text)); d != "" {
			err = fmt.Errorf("%w: %s", err, d)
		}
		// Either list may be the wrong one: the first node up is not the
		// right one by being first.
		err = fmt.Errorf("%w (every node needs the same cluster-name and cluster-nodes: correct whichever of the two is wrong and restart it)", err)
		c.refuse(err, p)
		return
	}
	if p == nil {
		return // same hash, so it is in the list: unreachable
	}
	if hb.leaving {
		if p.left.Swap(hb.instance) != hb.instance {
			c.log.Info("cluster: node leaving: handing over to a successor", "peer", hb.node)
		}
		p.instance.Store(hb.instance)
		return
	}
	if hb.instance == p.left.Load() {
		return // a heartbeat sent before its leaving notice, late
	}
	if p.mismatched.Swap(false) {
		c.log.Info("cluster: node's configuration matches again", "peer", hb.node)
	}
	p.instance.Store(hb.instance)
	now := 1 + int64(time.Since(c.epoch))
	p.heard.Store(now)
	p.seen.Store(now)
}

// Instance returns the instance node last announced, random per Start of
// its process: a new one means the node restarted, and what the old
// process had in hand and did not answer is lost. For this node, its own;
// 0 for a node never heard.
func (c *Cluster) Instance(node uint32) uint64 {
	if node == c.cfg.Self {
		return c.instance
	}
	if p := c.peers[node]; p != nil {
		return p.instance.Load()
	}
	return 0
}

// refuse handles a mismatch: during Join it fails Join; later it logs
// (once per peer until it matches again) and p, if a peer, is down.
func (c *Cluster) refuse(err error, p *peer) {
	if c.starting.Load() {
		select {
		case c.mismatch <- err:
		default:
		}
	}
	if p == nil {
		c.log.Error("cluster: heartbeat from outside this cluster's configuration", "err", err)
		return
	}
	if !p.mismatched.Swap(true) {
		c.log.Error("cluster: node treated as down", "err", err)
	}
}

// heartbeats publishes this node's heartbeat every Heartbeat and turns
// peers' silence into down events. It is the only sender on c.events.
func (c *Cluster) heartbeats() {
	defer c.wg.Done()
	defer close(c.events)
	if !c.holdFirstHeartbeat() {
		return
	}
	msg := appendHeartbeat(nil, c.cfg.Self, c.hash, c.instance, c.canon)
	tick := time.NewTicker(c.cfg.Heartbeat)
	defer tick.Stop()
	for {
		if c.leaving.Load() {
			msg = appendLeaving(msg[:0], c.cfg.Self, c.hash, c.instance, c.canon)
		}
		if c.quiet.Load() {
			// A test's live node whose heartbeats are late: not sent.
		} else if err := c.nc.Publish(c.control, msg); err != nil && !errors.Is(err, nats.ErrReconnectBufExceeded) {
			c.log.Debug("cluster: heartbeat not sent", "err", err)
		}
		now := time.Now()
		for id, p := range c.peers {
			up := c.Up(id)
			if up == p.up {
				continue
			}
			p.up = up
			if up {
				c.log.Info("cluster: node up", "peer", id)
			} else {
				c.log.Warn("cluster: node down", "peer", id, "silent_for", c.cfg.DownAfter, "last_heartbeat", c.since(p.heard.Load()))
			}
			select {
			case c.events <- NodeEvent{Node: id, Up: up, At: now}:
			default:
				c.lostEvent.Add(1)
			}
		}
		select {
		case <-c.done:
			return
		case <-tick.C:
		}
	}
}

// holdFirstHeartbeat keeps this node silent until it has heard every
// peer, or for two heartbeat intervals at most: a peer that hears it sends
// it payloads at once (the forwards of its clients' SENDs), and the answers
// go only to peers this node sees up. A node that starts beside running
// ones (a restart, a takeover's successor) hears them within an interval;
// a cluster that starts at once waits the two intervals. It reports false
// if the cluster closed meanwhile.
func (c *Cluster) holdFirstHeartbeat() bool {
	wait := time.NewTimer(2 * c.cfg.Heartbeat)
	defer wait.Stop()
	poll := time.NewTicker(holdPoll)
	defer poll.Stop()
	for {
		if c.allUp() {
			return true
		}
		select {
		case <-c.done:
			return false
		case <-wait.C:
			return true
		case <-poll.C:
		}
	}
}

// holdPoll is how often holdFirstHeartbeat looks whether every peer was
// heard.
const holdPoll = 5 * time.Millisecond

// since returns how long ago t (1 + nanoseconds from epoch) was, or -1
// for 0 (never).
func (c *Cluster) since(t int64) time.Duration {
	if t == 0 {
		return -1
	}
	return (time.Since(c.epoch) - time.Duration(t-1)).Round(time.Millisecond)
}

// Self returns this node's ID.
func (c *Cluster) Self() uint32 { return c.cfg.Self }

// Home returns the node that homes mailbox owner id; see Config.Home.
func (c *Cluster) Home(id uint64) uint32 { return c.cfg.Home(id) }

// Up reports whether node gave a sign of life within DownAfter: a
// heartbeat with a matching configuration, or a payload while it was up
// (seenPayload). Self is always up; an unknown node never is.
func (c *Cluster) Up(node uint32) bool {
	if node == c.cfg.Self {
		return true
	}
	p := c.peers[node]
	if p == nil || p.mismatched.Load() {
		return false
	}
	if p.leaving() {
		return false
	}
	seen := p.seen.Load()
	return seen != 0 && time.Since(c.epoch)-time.Duration(seen-1) < c.cfg.DownAfter
}

// Leaving reports whether node said it is handing over to a successor
// (Leave) and no later process of it has been heard since: it is down
// for Up, and its successor is expected within about a second.
func (c *Cluster) Leaving(node uint32) bool {
	p := c.peers[node]
	return p != nil && p.leaving()
}

// leaving reports whether p's last heard instance is the one whose leaving
// notice was heard.
func (p *peer) leaving() bool {
	l := p.left.Load()
	return l != 0 && l == p.instance.Load()
}

// allUp reports whether every peer is up.
func (c *Cluster) allUp() bool {
	for id := range c.peers {
		if !c.Up(id) {
			return false
		}
	}
	return true
}

// Addr returns node's client address (for redirects), or "" for a node not
// in the configuration.
func (c *Cluster) Addr(node uint32) string { return c.clients[node] }

// Send publishes payload to node's subject, with this node's ID in front.
// It answers false, having sent nothing, when node is down (not Up), the
// connection to NATS is not up (nothing is buffered while it reconnects),
// or payload is over 1 MiB less 4 bytes. It copies payload before it
// returns. It blocks only while the client's 32 KiB write buffer is
// written to the local server, at most flusherTimeout; what the server has
// not yet written to the peer's route is bounded by maxPending, past which
// the server cuts the route as a slow consumer. Delivery treats a payload
// sent to a node that dies as lost (its own timeout).
func (c *Cluster) Send(node uint32, payload []byte) bool {
	subj, ok := c.subjects[node]
	if !ok || len(payload) > maxPayload || !c.Up(node) || node == c.cfg.Self && !c.hasJoined() || !c.nc.IsConnected() {
		c.refused.Add(1)
		return false
	}
	bp, _ := c.bufs.Get().(*[]byte)
	if bp == nil {
		bp = new([]byte)
	}
	buf := binary.BigEndian.AppendUint32((*bp)[:0], c.cfg.Self)
	buf = append(buf, payload...)
	err := c.nc.Publish(subj, buf)
	*bp = buf
	if cap(buf) <= 64<<10 { // keep only small buffers
		c.bufs.Put(bp)
	}
	if err != nil {
		c.refused.Add(1)
		return false
	}
	c.sent.Add(1)
	return true
}

// hasJoined reports whether Join succeeded. Self is up from New on, but
// the connection Send publishes on exists only once Join made it: until
// then Send refuses Self, as it refuses every peer not yet heard.
func (c *Cluster) hasJoined() bool {
	select {
	case <-c.joined:
		return true
	default:
		return false
	}
}

// Watch returns the channel of up and down transitions of peers, for logs
// and metrics. It holds at most 64 events; while it is full, new events are
// dropped (counted in Stats.Events). It is closed by Close.
func (c *Cluster) Watch() <-chan NodeEvent { return c.events }

// Stats returns this node's counters.
func (c *Cluster) Stats() Stats {
	s := Stats{
		Sent:        c.sent.Load(),
		SendRefused: c.refused.Load(),
		Received:    c.received.Load(),
		Dropped:     c.dropped.Load(),
		Events:      c.lostEvent.Load(),
		Malformed:   c.malformed.Load(),
	}
	if n, err := c.sub.Dropped(); err == nil {
		s.Dropped += uint64(n)
	}
	for id := range c.peers {
		if !c.Up(id) {
			s.PeersDown++
		}
	}
	return s
}

// Leave tells the other nodes that this one is handing over to a
// successor: it publishes a leaving notice now, and in place of every
// heartbeat from then on. A node that hears it takes this one down at
// once, so it sends nothing more here (its SENDs to this node's users are
// refused, retryable, as to any node down) until it hears the successor's
// heartbeat. Payloads already on their way still arrive, and Send still
// works: the caller answers what it was asked, then StopReceiving and
// Close.
func (c *Cluster) Leave() {
	c.leaving.Store(true)
	msg := appendLeaving(nil, c.cfg.Self, c.hash, c.instance, c.canon)
	if err := c.nc.Publish(c.control, msg); err != nil {
		c.log.Debug("cluster: leaving notice not sent", "err", err)
	}
	_ = c.nc.FlushTimeout(flusherTimeout)
}

// StopReceiving removes this node's subscription once every payload NATS
// has delivered for it was handed to the handler, waiting at most
// drainTimeout: after it returns, the handler is not called again.
func (c *Cluster) StopReceiving() error {
	closed := c.sub.StatusChanged(nats.SubscriptionClosed)
	if err := c.sub.Drain(); err != nil {
		return fmt.Errorf("cluster: stop receiving: %w", err)
	}
	t := time.NewTimer(drainTimeout)
	defer t.Stop()
	select {
	case <-closed:
		return nil
	case <-t.C:
		_ = c.sub.Unsubscribe()
		return fmt.Errorf("cluster: stop receiving: payloads still pending after %v, dropped", drainTimeout)
	}
}

// drainTimeout bounds StopReceiving: the handler's pending payloads are
// at most pendingMsgs, each handed to a queue.
const drainTimeout = 2 * time.Second

// Close flushes what was sent (waiting at most flusherTimeout), closes the
// connection and stops the embedded server. It is safe to call twice.
func (c *Cluster) Close() error {
	c.closeOnce.Do(func() {
		close(c.done)
		c.wg.Wait()
		c.shutdown()
	})
	return nil
}

// shutdown closes the connection and the embedded server, whichever exist.
func (c *Cluster) shutdown() {
	if c.nc != nil {
		_ = c.nc.FlushTimeout(flusherTimeout)
		c.nc.Close()
	}
	if c.srv != nil {
		c.srv.Shutdown()
		c.srv.WaitForShutdown()
	}
}
