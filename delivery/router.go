package delivery

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"switchboard/protocol"
	"switchboard/storage"
)

// Config configures a Router. The zero value of each field selects its default.
type Config struct {
	// Shards is the number of routing goroutines. Default: 2 × GOMAXPROCS,
	// so one shard waiting on a storage read leaves the others busy.
	Shards int
	// QueueLen bounds each shard's request queue. A full queue refuses the
	// request (the sender gets REFUSE RETRY_LATER). Default 4096: about a
	// tenth of a second of a busy shard's work.
	QueueLen int
	// MaxInFlight bounds the appends and acks a shard has handed to storage
	// and not yet seen completed; at the bound the shard stops taking requests
	// until completions arrive. Default 8192: several group commits' worth,
	// so storage always has a full batch to commit.
	MaxInFlight int
	// Window is the most entries pushed to a connection and not yet
	// acknowledged. Default 256: a phone acks well before that, and 256
	// small messages fill a mobile link for a second or more.
	Window int
	// WindowBytes bounds the record bytes pushed to a connection since it
	// last acknowledged everything pushed (a client acks promptly when idle),
	// so a window of large messages does not land on the gateway at once.
	// Keep it below the gateway's outbound cap, or a backlog of large
	// messages closes its reader as a slow consumer. Default 128 KiB: half
	// the gateway's default cap. One entry larger than this still goes, alone.
	WindowBytes int
	// PageBytes bounds the value bytes of one storage read when draining a
	// backlog. Default 128 KiB, half the default outbound cap of a connection.
	PageBytes int
	// SlowAfter is how long a connection's window may stay full before it is
	// closed as a slow consumer. Default 30 s: a full window of small
	// messages crosses even a poor mobile link in a few seconds.
	SlowAfter time.Duration
	// Logger receives the router's logs. Default: slog.Default().
	Logger *slog.Logger
	// Now is the clock. Default: time.Now.
	Now func() time.Time
}

func (c *Config) setDefaults() {
	if c.Shards == 0 {
		c.Shards = 2 * runtime.GOMAXPROCS(0)
	}
	if c.QueueLen == 0 {
		c.QueueLen = 4096
	}
	if c.MaxInFlight == 0 {
		c.MaxInFlight = 8192
	}
	if c.Window == 0 {
		c.Window = 256
	}
	if c.WindowBytes == 0 {
		c.WindowBytes = protocol.WindowBytes
	}
	if c.PageBytes == 0 {
		c.PageBytes = 128 << 10
	}
	if c.SlowAfter == 0 {
		c.SlowAfter = 30 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// validate reports every invalid field at once.
func (c *Config) validate() error {
	var errs []error
	check := func(ok bool, format string, args ...any) {
		if !ok {
			errs = append(errs, fmt.Errorf("delivery: "+format, args...))
		}
	}
	check(c.Shards > 0, "Shards %d must be positive", c.Shards)
	check(c.QueueLen > 0, "QueueLen %d must be positive", c.QueueLen)
	check(c.MaxInFlight > 0, "MaxInFlight %d must be positive", c.MaxInFlight)
	check(c.Window > 0, "Window %d must be positive", c.Window)
	check(c.WindowBytes > 0 && c.WindowBytes < 1<<31, "WindowBytes %d must be positive and below 2 GiB", c.WindowBytes)
	check(c.PageBytes > 0, "PageBytes %d must be positive", c.PageBytes)
	check(c.SlowAfter > 0, "SlowAfter %v must be positive", c.SlowAfter)
	return errors.Join(errs...)
}

// Router routes messages between users through storage. Its methods that
// take requests (Login, Send, Ack, …) may be called from any goroutine and
// never block.
type Router struct {
	// Immutable after construction.
	cfg    Config
	store  storage.Store
	shards []*shard
	own    owners // who owns each mailbox: the shards (owners.go)
	groups []*groupWorker
	// sessions reaches the sessions of online users; set by Start.
	sessions Sessions
	// peer is this node's side of a cluster (peers.go); zero when alone.
	// Set by Join, before Start.
	peer peering

	stopOnce sync.Once
	wg       sync.WaitGroup
	groupsWG sync.WaitGroup // the group workers alone, for Finish
	// finishing makes Stop take every request already queued (Finish).
	finishing atomic.Bool

	// rescan is set when a pending receipt could not be queued (a shard's
	// held receipts were full): the first shard then offers every pending
	// receipt again on its next tick.
	rescan atomic.Bool
	// redoEvents is set when the pending group events could not be read at
	// Start: the first shard reads them again on its next tick.
	redoEvents atomic.Bool
	// busy sets the retry_after of busy refusals from how long they have
	// been going on (backoff.go). Atomic; shared with the event loops.
	busy backoff
	// expiredSeen is the store's Stats.ExpiredReceipts when the pending
	// receipts were last offered: when it grows, expiry (which no request
	// of ours started) has left expired receipts owed, and the first
	// shard offers those on its next tick. Set by Start, then owned by
	// the first shard's goroutine.
	expiredSeen uint64

	// panicHook, when set (by tests, before Start), is called as a shard or
	// group worker takes a request, and may panic. nil in production.
	panicHook func(worker string, user uint64)
	// crashDrain is how long a crashed shard waits for its storage
	// operations (supervise.go): the constant crashDrain, which tests may
	// shorten before Start.
	crashDrain time.Duration
	// down names a worker that crashed too often to be restarted; while
	// set, Ready reports it. Guarded by downMu.
	downMu sync.Mutex
	down   string

	stats  Stats
	accept latency // send→ACCEPT of 1:1 sends (latency.go)
	// epoch is what sends are stamped from (request.at), a nanosecond
	// before New so that every stamp is positive. Immutable.
	epoch time.Time
}

// Stats are the router's counters. Every field is atomic.
type Stats struct {
	Sends             atomic.Uint64 // SEND requests taken
	Accepted          atomic.Uint64 // sends made durable and acknowledged
	Duplicates        atomic.Uint64 // retried sends acknowledged without a second copy
	Refused           atomic.Uint64 // sends refused after storage failed or a mailbox was full
	Busy              atomic.Uint64 // requests refused because a shard queue was full
	DeliveredLive     atomic.Uint64 // entries pushed as soon as they were committed
	DeliveredStored   atomic.Uint64 // entries pushed from a storage read (backlog, window refill)
	Acks              atomic.Uint64 // ACKs applied
	Receipts          atomic.Uint64 // receipt entries stored
	ReceiptsHeld      atomic.Uint64 // times receipts waited for room in their sender's shard queue
	ReceiptsDropped   atomic.Uint64 // receipts put off because the sender's shard queue stayed full; still pending in storage, offered again within a second
	ReceiptsRefused   atomic.Uint64 // receipt entries the store refused (sender's mailbox full, storage recovering); delivered ones stay pending and are offered again
	ReceiptsReplayed  atomic.Uint64 // pending receipts offered from storage (at start, after some were put off, or after expiry recorded expired ones)
	ReadsDropped      atomic.Uint64 // read receipts lost: both the sender's and the reader's shard queues were full, or held receipts were at their bound
	SignalsDropped    atomic.Uint64 // signals for users offline or behind a full queue (a group signal counts each member)
	GroupEventsRedone atomic.Uint64 // group events announced again (at start, or for a retried GROUP request)
	SignalRequests    atomic.Uint64 // signal requests offered to shard queues: one per 1:1 signal, at most one per shard for a group signal
	SlowConsumers     atomic.Uint64 // connections closed because their window stayed full
	Replaced          atomic.Uint64 // connections closed by a newer login of their user
	StorageErrors     atomic.Uint64 // storage reads and commits that failed
	Crashes           atomic.Uint64 // panics of a shard or group worker (each restarted with its state reloaded)
	Forwarded         atomic.Uint64 // 1:1 SENDs and group requests handed to the home node of their recipient or group (a cluster)
	FanoutsForwarded  atomic.Uint64 // group fan-outs handed to another node for the members it homes, one per node per message or event (a cluster)
	ForwardTimeouts   atomic.Uint64 // forwarded SENDs whose answer did not come in time: their senders were told to retry
	HomeDown          atomic.Uint64 // SENDs and group requests refused at once because the home node of their recipient, group or one of its members was down
	ReceiptsForwarded atomic.Uint64 // receipts handed to their sender's home node (a cluster)
	PeerErrors        atomic.Uint64 // payloads from other nodes that did not decode (a mismatched build)
}

// New returns a Router over store. Start it with Start.
func New(cfg Config, store storage.Store) (*Router, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	r := &Router{cfg: cfg, store: store, epoch: cfg.Now().Add(-time.Nanosecond), crashDrain: crashDrain}
	r.shards = make([]*shard, cfg.Shards)
	for i := range r.shards {
		r.shards[i] = newShard(r, i)
	}
	r.own = localShards(r.shards)
	// Half as many group workers as shards: group operations are rare, and
	// a group message costs its worker one hand-off per member.
	r.groups = make([]*groupWorker, max(1, cfg.Shards/2))
	for i := range r.groups {
		r.groups[i] = newGroupWorker(r)
	}
	return r, nil
}

// Start queues the delivered receipts that storage holds as pending (left
// by a stop or a crash before they reached their senders' mailboxes), then
// starts the shard goroutines, which reach online users through sessions
// (nil: nobody is ever online, for tools that only replay storage).
func (r *Router) Start(sessions Sessions) {
	if sessions == nil {
		sessions = noSessions{}
	}
	if r.peer.peers != nil {
		sessions = peerSessions{local: sessions, peers: r.peer.peers}
	}
	r.sessions = sessions
	r.expiredSeen = r.store.Stats().ExpiredReceipts // read before the scan: what it misses shows as growth
	r.requeuePending(false)
	for i, s := range r.shards {
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			r.supervise(fmt.Sprintf("shard %d", i), s.run, s.recoverCrash)
		}()
	}
	for i, g := range r.groups {
		r.wg.Add(1)
		r.groupsWG.Add(1)
		go func() {
			defer r.wg.Done()
			defer r.groupsWG.Done()
			r.supervise(fmt.Sprintf("group worker %d", i), g.run, g.recoverCrash)
		}()
	}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		r.redoGroupEvents()
	}()
}

// redoGroupEvents hands every group event still pending in storage (its
// announcement was cut short by a stop, a crash or a failed copy) to its
// group's worker, which stores the copies still missing and settles it.
// When storage cannot list them, the first shard's next tick tries again
// (redoEvents).
func (r *Router) redoGroupEvents() {
	var evs []storage.GroupEvent
	if err := r.store.PendingGroupEvents(func(ev storage.GroupEvent) bool {
		evs = append(evs, ev)
		return true
	}); err != nil {
		r.stats.StorageErrors.Add(1)
		r.cfg.Logger.Error("delivery: reading pending group events; trying again on the next tick", "err", err)
		r.redoEvents.Store(true)
		return // what was read comes again with the rest
	}
	for i := range evs {
		w := r.groupFor(evs[i].Group)
		select {
		case w.in <- groupReq{group: evs[i].Group, redo: &evs[i]}:
		case <-w.stop:
			return
		}
	}
}

// Stop stops taking requests, waits until every append and ack handed to
// storage has completed (so their ACCEPTs are queued), and stops the shards.
// Requests still queued are dropped: none of them was acknowledged, and
// clients retry them; delivered receipts still queued or held stay pending
// in storage and are offered again by the next Start. Stop does not close
// the store.
func (r *Router) Stop() {
	r.stopOnce.Do(func() {
		for _, g := range r.groups {
			close(g.stop)
		}
		if r.finishing.Load() {
			r.groupsWG.Wait() // their fan-outs are queued with the shards
		}
		for _, s := range r.shards {
			close(s.stop)
		}
	})
	r.wg.Wait()
}

// offerOwed runs on the first shard's tick: it offers every pending
// receipt again after one was put off (rescan), or only the expired ones
// when expiry recorded more since the last look. The counter is read
// before the scan, so a commit the scan misses shows at the next tick.
// It also lists the pending group events again when Start's listing
// failed (redoEvents).
func (r *Router) offerOwed() {
	if r.redoEvents.Swap(false) {
		r.wg.Add(1) // this shard is counted in wg: it cannot be at zero
		go func() {
			defer r.wg.Done()
			r.redoGroupEvents()
		}()
	}
	all := r.rescan.Swap(false)
	n := r.store.Stats().ExpiredReceipts
	expired := n != r.expiredSeen
	r.expiredSeen = n
	if all || expired {
		r.requeuePending(!all)
	}
}

// requeuePending offers every receipt pending in storage to its sender's
// shard, or only the expired ones. What does not fit in a queue stays
// pending and sets rescan. A receipt offered twice is stored twice, which
// clients tolerate: receipts may repeat, never go missing.
func (r *Router) requeuePending(expiredOnly bool) {
	full := false
	err := r.store.PendingReceipts(func(p storage.PendingReceipt) bool {
		if expiredOnly && !p.Expired {
			return true // delivered ones are in the hands of the acks that made them
		}
		if !r.submitQuiet(p.Sender, receiptRequest(p)) {
			full = true
			return true
		}
		r.stats.ReceiptsReplayed.Add(1)
		return true
	})
	if err != nil {
		r.stats.StorageErrors.Add(1)
		r.cfg.Logger.Error("delivery: reading pending receipts", "err", err)
		full = true
	}
	if full {
		r.rescan.Store(true)
	}
}

// Stats returns the router's counters.
func (r *Router) Stats() *Stats { return &r.stats }

// Window returns the flow window, for the WELCOME frame.
func (r *Router) Window() int { return r.cfg.Window }

// shardFor returns the shard that owns user (tests; requests go through
// r.own).
func (r *Router) shardFor(user uint64) *shard {
	i, _ := r.own.owner(user)
	return r.shards[i]
}

// push hands out to session s; see Sessions for what it promises.
func (r *Router) push(s Session, out Outbound) bool { return r.sessions.Push(s, out) }

// close closes session s with code.
func (r *Router) close(s Session, code protocol.Code) { r.sessions.Close(s, code) }

func (r *Router) submit(user uint64, q request) bool {
	if r.submitQuiet(user, q) {
		return true
	}
	r.refusedBusy()
	return false
}

// refusedBusy counts a request refused because its queue was full.
func (r *Router) refusedBusy() {
	r.stats.Busy.Add(1)
	r.busy.note(r.cfg.Now())
}

// BusyRetryAfter returns the retry_after, in milliseconds, for a request
// refused because its queue was full (Send, GroupOp or Login
// returned false): 100 ms while such refusals are rare, doubling for every
// 250 ms in which they went on, up to MaxBusyRetryAfter, and halving for
// every 250 ms without one; jittered into [½, 1] of that value, so that
// the resends of a burst spread out. Any goroutine may call it; it takes
// no lock and allocates nothing.
func (r *Router) BusyRetryAfter() uint32 { return r.busy.retryAfter(r.cfg.Now()) }

// submitQuiet is submit without counting a refusal as Busy.
func (r *Router) submitQuiet(user uint64, q request) bool {
	_, o := r.own.owner(user)
	return o.offer(q)
}

// Finish is Stop for a handover (package handover), where no client will
// reconnect to resend what a stop drops: the group workers first handle
// every request already queued for them, then the shards theirs, and the
// commits complete, so every request the gateway handed over is answered
// (its ACCEPT or REFUSE queued). The gateway must have stopped reading:
// nothing new may arrive. Receipts a shard makes for another that has
// already stopped stay pending in storage, and the next Start offers them.
func (r *Router) Finish() {
	r.finishing.Store(true)
	r.Stop()
}

// Resume makes s, a connection another process handed over, the session
// of to's mailbox where that process left it: the client acknowledged
// through acked, and everything through written was written to it, so the
// backlog resumes after written. Unlike Login there is no WELCOME (the
// client has had one), and it waits for room in the queue instead of
// refusing: it runs once per connection, before the connection is read.
// It reports false only when the router stopped.
func (r *Router) Resume(s Session, to Addressee, acked, written uint64) bool {
	_, o := r.own.owner(to.User)
	return o.offerWait(request{kind: reqResume, sess: s, user: to.User, seq: acked, more: written}, r.shards[0].stop)
}

// Login registers s as the session of to's mailbox, replacing (and
// closing) any other, applies ack as a cumulative acknowledgement, pushes
// OutWelcome and then the backlog after ack. It returns false if the shard
// is too busy: the caller closes s and the client reconnects.
func (r *Router) Login(s Session, to Addressee, ack uint64) bool {
	return r.submit(to.User, request{kind: reqLogin, sess: s, user: to.User, seq: ack})
}

// Logout forgets s as the session of to's mailbox. It is best effort: if
// the queue is full the shard still learns it from the next Push that
// fails.
func (r *Router) Logout(s Session, to Addressee) {
	r.submit(to.User, request{kind: reqLogout, sess: s, user: to.User})
}

// Send makes m.Record durable as the next entry of the recipient's mailbox
// (or, for a group, of every member's but the sender's), then pushes
// OutAccept(m.MsgID) to s (or OutRefuse) and the entry to the recipients'
// sessions. m.Retry says the sender may have sent m.MsgID before (the
// SEND's flag B): only then is it checked for a duplicate. m.Record must
// not be modified afterwards. It returns false when the recipient's shard
// (or the group's worker) is busy: nothing was taken.
func (r *Router) Send(s Session, m Message) bool {
	var ok bool
	if m.Group {
		q := groupReq{send: true, sess: s, from: m.From.User, msgID: m.MsgID, group: m.To, retry: m.Retry, record: m.Record}
		if home := r.remote(m.To); home != 0 {
			ok = r.groupRemote(home, q)
		} else {
			ok = r.submitGroup(q)
		}
	} else {
		q := request{kind: reqSend, sess: s, user: m.To, from: m.From.User, msgID: m.MsgID, retry: m.Retry, record: m.Record, at: r.stamp()}
		if home := r.remote(m.To); home != 0 {
			return r.sendRemote(home, q)
		}
		ok = r.submit(m.To, q)
	}
	if ok {
		r.stats.Sends.Add(1)
	}
	return ok
}

// Ack acknowledges every entry of to's mailbox through seq, which s has
// been sent. It returns false when the shard is busy; acks are cumulative,
// so the caller may simply pass a later one.
func (r *Router) Ack(s Session, to Addressee, seq uint64) bool {
	return r.submit(to.User, request{kind: reqAck, sess: s, user: to.User, seq: seq})
}

// MaxReadRun is the most msg ids one READ may cover (its more is below
// it). A client reports reads a screen or a conversation at a time; 1,024
// ids is far more than a screen, and it bounds what one frame may claim.
const MaxReadRun = protocol.MaxReadIDs

// Errors of Read.
var (
	// ErrReadRange is a READ over more than MaxReadRun ids, or one whose
	// range passes 2^64-1: the client is at fault.
	ErrReadRange = errors.New("delivery: READ range over 1024 msg ids")
	// ErrBusy is a request that neither shard concerned could queue.
	ErrBusy = errors.New("delivery: shard queues full")
)

// Read stores a read receipt in the sender's mailbox: the reader has read
// the sender's messages MsgID through MsgID+More. The receipt always names the reader
// (RECEIPT.by), 1:1 or group alike, so a READ can only ever claim that
// its own user read something.
//
// When the sender's shard queue is full, the reader's shard holds the
// receipt and offers it again, as it does delivered receipts (bounded by
// Config.QueueLen; past it the receipt is dropped and counted in
// ReadsDropped). Read returns ErrReadRange for a range over MaxReadRun,
// and ErrBusy (counted in ReadsDropped) when the reader's shard queue is
// full too; READ has no answer, so the caller can only drop it.
func (r *Router) Read(rr ReadReceipt) error {
	reader, sender, msgID, more := rr.Reader.User, rr.Sender.User, rr.MsgID, rr.More
	if more >= MaxReadRun || msgID > math.MaxUint64-more {
		return ErrReadRange
	}
	q := request{kind: reqReceipt, user: sender, from: reader, msgID: msgID, more: more, read: true}
	if r.submitQuiet(sender, q) {
		return nil
	}
	q.kind = reqHoldRead
	if r.submitQuiet(reader, q) {
		return nil
	}
	r.refusedBusy()
	r.stats.ReadsDropped.Add(1)
	return ErrBusy
}

// Signal passes an ephemeral signal from one user to another if it is
// online; otherwise it is dropped.
func (r *Router) Signal(from, to Addressee, kind uint32) {
	r.stats.SignalRequests.Add(1)
	if !r.submitQuiet(to.User, request{kind: reqSignal, user: to.User, from: from.User, msgID: uint64(kind)}) {
		r.stats.SignalsDropped.Add(1)
	}
}

// groupFor returns the worker that serves group.
func (r *Router) groupFor(group uint64) *groupWorker {
	h := (group * 0x9E3779B97F4A7C15) >> 32
	return r.groups[h%uint64(len(r.groups))]
}

func (r *Router) submitGroup(q groupReq) bool {
	select {
	case r.groupFor(q.group).in <- q:
		return true
	default:
		if !q.signal { // a signal is dropped, refused to nobody
			r.refusedBusy()
		}
		return false
	}
}

// GroupOp applies a GROUP request of actor as one durable change, then
// stores a GROUP_EVENT in the mailbox of every member concerned (if it
// changed anything) and pushes OutAccept(msgID) to s, with the group as Ref,
// or OutRefuse. A create's group id is derived from actor and msgID, so a
// retried create finds its group. It returns false when the group's worker
// is busy.
func (r *Router) GroupOp(s Session, actor Addressee, g *protocol.Group) bool {
	q := groupReq{sess: s, from: actor.User, msgID: g.MsgID, group: g.Group, op: g.Op, list: g.Members}
	if g.Op == protocol.GroupCreate {
		q.group = groupID(actor.User, g.MsgID)
	}
	if home := r.remote(q.group); home != 0 {
		return r.groupRemote(home, q)
	}
	return r.submitGroup(q)
}

// SignalGroup passes an ephemeral signal to the online members of group:
// one request to each shard that owns members, never a storage read per
// member (signal.go).
func (r *Router) SignalGroup(from Addressee, group uint64, kind uint32) {
	q := groupReq{signal: true, from: from.User, msgID: uint64(kind), group: group}
	if home := r.remote(group); home != 0 {
		r.groupRemote(home, q)
		return
	}
	if !r.submitGroup(q) {
		r.stats.SignalsDropped.Add(1)
	}
}

// groupID derives a group's id from its creator and the create request's id.
func groupID(creator, msgID uint64) uint64 {
	h := (creator*0x9E3779B97F4A7C15 ^ msgID) * 0xBF58476D1CE4E5B9
	h ^= h >> 31
	return groupIDBase + h%groupIDSpan
}

// quotaRetryAfter is the retry_after of a refusal for the sender's quota,
// in milliseconds: a minute, as recipients take that long or far longer to
// come back, and a retry costs the server a lookup each time.
const quotaRetryAfter = 60_000

// capacity reports whether err is a refusal for lack of room (a mailbox,
// the sender's quota, the store), not a failure of storage.
func capacity(err error) bool {
	return errors.Is(err, storage.ErrMailboxFull) || errors.Is(err, storage.ErrSenderQuota) || errors.Is(err, storage.ErrStoreFull)
}

// refusalReason names why a failed append was refused, for Outbound.Reason.
func refusalReason(err error) string {
	switch {
	case errors.Is(err, storage.ErrMailboxFull):
		return "recipient's mailbox full"
	case errors.Is(err, storage.ErrSenderQuota):
		return "sender's quota of messages waiting in others' mailboxes reached"
	case errors.Is(err, storage.ErrStoreFull):
		return "store at its total size limit"
	case errors.Is(err, storage.ErrDiskFull):
		return "free disk space below the floor"
	case errors.Is(err, storage.ErrValueTooLarge):
		return "message over storage's value limit"
	case errors.Is(err, storage.ErrRecovering):
		return "storage recovering from a failed commit"
	case errors.Is(err, storage.ErrCommit):
		return "storage commit failed"
	case errors.Is(err, errBusy):
		return "a member's shard is busy"
	}
	if pr, ok := errors.AsType[*peerRefusal](err); ok {
		return pr.reason
	}
	return "storage failed"
}

// refusal maps a failed append to the code and retry delay the sender is
// told. A copy a member's shard was too busy to take counts as a busy
// refusal: its delay is BusyRetryAfter's, jittered and growing while such
// refusals go on, as the gateway's are.
func (r *Router) refusal(err error) (protocol.Code, uint32) {
	if pr, ok := errors.AsType[*peerRefusal](err); ok {
		return pr.code, pr.retryAfter
	}
	switch {
	case errors.Is(err, errBusy):
		r.busy.note(r.cfg.Now())
		return protocol.CodeRetryLater, r.BusyRetryAfter()
	case errors.Is(err, storage.ErrMailboxFull):
		return protocol.CodeMailboxFull, 5000
	case errors.Is(err, storage.ErrSenderQuota):
		// The sender's own backlog in others' mailboxes; it frees up as
		// they ack, in minutes or days.
		return protocol.CodeQuota, quotaRetryAfter
	case errors.Is(err, storage.ErrDiskFull), errors.Is(err, storage.ErrStoreFull):
		return protocol.CodeStorage, 5000 // space comes back when recipients ack, or an operator frees it
	case errors.Is(err, storage.ErrValueTooLarge):
		return protocol.CodeStorage, 0 // storage's value limit is below the body limit: do not retry as is
	default:
		return protocol.CodeStorage, 1000
	}
}
