package client

import (
	"errors"
	"math/rand/v2"
	"time"

	"switchboard/protocol"
)

// Config tunes a Session. The zero value is usable: every zero field takes
// the default documented beside it.
type Config struct {
	// NextMsgID is the msg_id the first new message takes: the counter the
	// application persisted (Session.NextMsgID) when it last ran. 0 means 1,
	// right for a new account (PROTOCOL.md 8.5: a counter costs 1–3 varint
	// bytes where a clock costs 7). An app that signs in to an existing
	// account without its counter starts at ClockMsgID(now) instead.
	NextMsgID uint64
	// Ack is the resume point the application persisted (Session.Resume):
	// every mailbox entry up to it is stored on the device. It goes out as
	// LOGIN.ack. 0: nothing received yet.
	Ack uint64

	// AckEvery is how many processed entries make an ACK go out at once. 0
	// means half of WELCOME.window (PROTOCOL.md 8.4: the server stops at the
	// window, so acknowledging at half keeps it sending).
	AckEvery int
	// AckBytes is how many bytes of processed entries make an ACK go out at
	// once. 0 means 64 KiB: half of the window's byte half (WindowBytes).
	AckBytes int
	// AckDelay is how long an entry waits for its ACK when neither threshold
	// is reached. 0 means 5 ms: long enough to coalesce a burst into one
	// ACK, short enough that senders get their receipts promptly.
	AckDelay time.Duration

	// MinBackoff and MaxBackoff bound the reconnect ceiling of PROTOCOL.md
	// 8.9: it starts at MinBackoff, doubles after each failed attempt up to
	// MaxBackoff, and the delay is drawn in [0, ceiling). 0 means 1 s and
	// 60 s, the protocol's figures.
	MinBackoff, MaxBackoff time.Duration
	// StableAfter is how long a connection must last past WELCOME for the
	// ceiling to fall back to MinBackoff when it ends. 0 means 10 s: a
	// server that takes logins and drops them at once is still backed off.
	StableAfter time.Duration

	// Rand returns a number in [0, n), n > 0, for the jitter of reconnect
	// delays. nil means math/rand/v2's Int64N. Tests inject a fixed source.
	Rand func(n int64) int64
}

// Defaults of Config, each explained beside its field.
const (
	DefaultAckBytes    = protocol.WindowBytes / 2
	DefaultAckDelay    = 5 * time.Millisecond
	DefaultMinBackoff  = time.Second
	DefaultMaxBackoff  = 60 * time.Second
	DefaultStableAfter = 10 * time.Second
)

// ErrMsgIDOrder means Session.Add was given a msg_id at or below one already
// in the outbox: the outbox keeps ids in ascending order, the order in which
// PROTOCOL.md 8.5 resends them.
var ErrMsgIDOrder = errors.New("client: msg id not above the outbox's last")

// ClockMsgID returns the msg_id to start from when the stored counter is
// lost (a reinstall, another device): microseconds since protocol.Epoch,
// above any id a counter started earlier can have reached (PROTOCOL.md 8.5).
func ClockMsgID(now time.Time) uint64 {
	return uint64(max(now.Sub(protocol.Epoch).Microseconds(), 1))
}

// Connection states of a Session.
const (
	stateDown  uint8 = iota // no connection
	stateLogin              // LOGIN written, waiting for WELCOME
	stateReady              // logged in
)

// pending is one outbox entry: a message (or GROUP request) not yet
// ACCEPTed nor refused for good. 24 bytes.
type pending struct {
	id  uint64
	due time.Duration // refused: not written again before this
	st  uint8         // pendWritten, pendTried
}

const (
	pendWritten uint8 = 1 << iota // written on the current connection
	pendTried                     // written before: every later write carries flag B
	pendDone                      // accepted or failed; trimmed when at the front
)

// MaxRedirects is how many GOAWAY MOVED in a row, without a WELCOME between
// them, a Session follows (PROTOCOL.md 8.10). The next counts as a failed
// attempt. A cluster sends a user home in one step; three allow for a node
// list that changes while a client is redirected, and stop two nodes that
// disagree on a user's home from bouncing it between them at full speed.
const MaxRedirects = 3

// never is a wake time that does not come.
const never = time.Duration(1<<63 - 1)

// Session is the client side of one user's session, without I/O: it is fed
// decoded frames and the current time, and tells its driver what to write
// and when to wake. It owns the outbox of messages not yet ACCEPTed (their
// ids; the driver keeps their bodies), the ACK schedule, the resume point,
// the backoff of REFUSE and of reconnects, and the resend with flag B of
// what a lost connection left unconfirmed. See the package doc for the
// driver's loop.
//
// Times are readings of the driver's monotonic clock, as durations since an
// origin it chooses (time.Since(start), or a fake clock in tests); they never
// go back. A Session is not safe for concurrent use: one goroutine drives it.
// The zero Session is ready, with the defaults of a zero Config.
type Session struct {
	cfg Config // immutable after NewSession

	// The connection.
	state     uint8
	window    uint32        // WELCOME.window of this connection
	welcomeAt time.Duration // when WELCOME arrived
	goAway    bool          // a GOAWAY came on this connection
	goAfter   uint32        // its after, ms
	goCode    protocol.Code // its code
	goAddr    string        // its addr
	attempts  int           // connections in a row that failed (or did not last)
	redirect  string        // where the last Closed sends the driver; "" none. Cleared by Redirect
	redirects int           // GOAWAY MOVED followed in a row, without a WELCOME between

	// Receiving.
	recv       uint64        // highest seq received on this connection
	handed     uint64        // highest seq Entry called new, on any connection: the application may process it after a reconnect
	last       uint64        // WELCOME.last of this connection
	done       uint64        // resume point: highest seq the application processed
	acked      uint64        // highest seq acknowledged on this connection (LOGIN included)
	ackEntries int           // entries processed since the last ACK
	ackBytes   int           // their bytes
	ackAt      time.Duration // when the pending ACK is due
	ackPending bool          // an ACK is scheduled at ackAt

	// Sending: out holds the outbox in msg_id order.
	nextID    uint64
	out       []pending     // the live entries: a window of arr
	arr       []pending     // out's backing array from its start, reused once ACCEPTs free its front
	cur       int           // every entry below cur is written, done or waiting
	retryAt   time.Duration // earliest due of a waiting entry below cur; never: none
	holdUntil time.Duration // a RETRY_LATER's retry_after: nothing is written before it
}

// NewSession returns a Session that starts with cfg.
func NewSession(cfg Config) *Session {
	return &Session{cfg: cfg, nextID: max(cfg.NextMsgID, 1), done: cfg.Ack, acked: cfg.Ack}
}

// Ready reports whether the session is logged in (WELCOME received, the
// connection not closed since).
func (s *Session) Ready() bool { return s.state == stateReady }

// Window returns WELCOME.window of the current connection; 0 before WELCOME.
func (s *Session) Window() uint32 { return s.window }

// --- The connection ---

// AppendLogin appends the preface and LOGIN to dst, with LOGIN.ack set to
// the resume point, and returns the extended slice: the first bytes of a new
// connection. l carries the token, ping and dict; its Ack is overwritten.
func (s *Session) AppendLogin(dst []byte, l protocol.Login) []byte {
	s.reset()
	s.state = stateLogin
	l.Ack = s.done
	dst = protocol.AppendPreface(dst, protocol.Version, protocol.TransportPlain)
	return l.Append(dst)
}

// Welcome records the WELCOME that completed the login at now. Messages
// left unconfirmed by the last connection are due again (NextSend), with
// flag B.
func (s *Session) Welcome(w *protocol.Welcome, now time.Duration) {
	s.state = stateReady
	s.redirects = 0
	s.window = w.Window
	s.last = w.Last
	s.welcomeAt = now
}

// GoAway records a GOAWAY: the server closes the connection right after,
// and Closed then waits what it asks (and, for CodeMoved, Redirect names
// where to go).
func (s *Session) GoAway(g *protocol.GoAway) {
	s.goAway, s.goAfter, s.goCode, s.goAddr = true, g.After, g.Code, g.Addr
}

// Redirect returns the address a GOAWAY MOVED named, when the last Closed
// followed it: the driver dials addr next, instead of the address it was
// configured with, and keeps dialling it on later reconnects until an
// attempt there fails (PROTOCOL.md 8.10). ok is false when Closed did not
// redirect: the driver dials the address it used last, or the configured
// one after a failed attempt at a redirected address. Reading the address
// clears it, and so does the next Closed.
func (s *Session) Redirect() (addr string, ok bool) {
	addr, s.redirect = s.redirect, ""
	return addr, addr != ""
}

// Closed records that the connection ended at now (or that a dial failed),
// with the code of the server's ERROR or GOAWAY, or 0 for a connection lost
// without one. It returns how long to wait before dialling again, and
// whether to dial again at all: not after REPLACED (two sessions would
// evict each other), BAD_TOKEN (the same token will not verify) or an
// unsupported version or transport (PROTOCOL.md 10). After TOKEN_EXPIRED
// the driver needs a fresh token for the next LOGIN.
//
// The delay follows PROTOCOL.md 8.9 and 8.10: after a GOAWAY with after >
// 0 (SHUTTING_DOWN, RETRY_LATER, no code, and MOVED), full jitter over its
// window, a random delay in [0, after] drawn from Config.Rand, the attempts
// in a row unchanged, so that the clients of a stopping server come back
// spread evenly over the window it sized; after a MOVED with an address
// Redirect gives the address (up to MaxRedirects in a row; the next counts
// as a failure, gives no address, and starts the count again); after a
// GOAWAY with TOKEN_EXPIRED and no delay, none; otherwise full jitter, a
// random delay in [0, ceiling), the ceiling doubling from MinBackoff to
// MaxBackoff with each connection in a row that did not last StableAfter
// past WELCOME.
//
// Every message written on the connection and not confirmed goes again on
// the next one, with flag B.
func (s *Session) Closed(code protocol.Code, now time.Duration) (delay time.Duration, reconnect bool) {
	if s.state == stateReady && now-s.welcomeAt >= s.stableAfter() {
		s.attempts = 0
	}
	goAway, after, addr := s.goAway, s.goAfter, s.goAddr
	if goAway && code == 0 {
		code = s.goCode
	}
	s.reset()
	s.redirect = ""
	switch code {
	case protocol.CodeReplaced, protocol.CodeBadToken, protocol.CodeUnsupportedVersion, protocol.CodeUnsupportedTransport:
		return 0, false
	}
	if code == protocol.CodeMoved && goAway && addr != "" {
		if s.redirects++; s.redirects <= MaxRedirects {
			s.redirect = addr
			return s.goAwayDelay(after), true
		}
		// A failure: the backoff of 8.9, not the GOAWAY's delay; then
		// redirects are followed again.
		s.redirects, goAway = 0, false
	}
	switch {
	case goAway && after > 0:
		return s.goAwayDelay(after), true
	case goAway && code == protocol.CodeTokenExpired:
		return 0, true
	}
	ceiling := s.minBackoff()
	for i := 0; i < s.attempts && ceiling < s.maxBackoff(); i++ {
		ceiling *= 2
	}
	ceiling = min(ceiling, s.maxBackoff())
	s.attempts++
	return time.Duration(s.rand(int64(ceiling))), true
}

// goAwayDelay returns a GOAWAY's reconnect delay: uniformly random in
// [0, after] ms, both ends included (full jitter, PROTOCOL.md 8.10).
func (s *Session) goAwayDelay(after uint32) time.Duration {
	d := time.Duration(after) * time.Millisecond
	return time.Duration(s.rand(int64(d) + 1))
}

// reset ends the current connection's state: what was written on it is
// unconfirmed and goes again with flag B.
func (s *Session) reset() {
	s.state = stateDown
	s.window = 0
	s.goAway, s.goAfter, s.goCode, s.goAddr = false, 0, 0, ""
	s.recv = s.done
	s.acked = s.done
	s.last = 0
	s.ackEntries, s.ackBytes, s.ackPending = 0, 0, false
	for i := range s.out {
		s.out[i].st &^= pendWritten
	}
	s.cur, s.retryAt = 0, never
}

// --- Receiving ---

// Entry reports whether the mailbox entry seq (a DELIVER, RECEIPT or
// GROUP_EVENT, alone or in a BATCH) is new: false for one at or below the
// resume point, a redelivery after a reconnect that the driver drops
// (PROTOCOL.md 8.5); if the application stored it after the connection it
// came on had dropped, its ACK is owed at once. A new entry is not
// acknowledged until Processed says the application has it.
func (s *Session) Entry(seq uint64) bool {
	if seq <= s.done {
		// The server sent it on this connection, so it may be acknowledged
		// here; it waits for that ACK, which is owed at once.
		s.recv = max(s.recv, seq)
		if seq > s.acked && !s.ackPending {
			s.ackPending, s.ackAt = true, 0
		}
		return false
	}
	s.recv = max(s.recv, seq)
	s.handed = max(s.handed, seq)
	return true
}

// Received returns the highest seq received on this connection (Entry),
// or the resume point if higher.
func (s *Session) Received() uint64 { return s.recv }

// Processed records that the application received (and stored) every entry
// up to seq, the last of them size bytes long: the resume point moves to seq
// and an ACK is owed. It reports whether the ACK should go out now (AppendAck)
// because AckEvery entries or AckBytes bytes wait for it; otherwise it goes
// at AckDue. An entry received on an earlier connection counts: an
// application may store it after a reconnect, and its copy redelivered on
// the new connection is then dropped (Entry). A seq above every entry
// received, or at or below the resume point, changes nothing.
func (s *Session) Processed(seq uint64, size int, now time.Duration) (ackNow bool) {
	if seq <= s.done || seq > s.handed {
		return false
	}
	s.done = seq
	s.ackEntries++
	s.ackBytes += size
	if !s.ackPending {
		s.ackPending = true
		s.ackAt = now + s.ackDelay()
	}
	return s.ackEntries >= s.ackEvery() || s.ackBytes >= s.ackBytesMax()
}

// Resume returns the resume point: the highest seq the application
// processed. Persist it with the entries; it is the next LOGIN.ack.
func (s *Session) Resume() uint64 { return s.done }

// AckDue returns when the owed ACK is due; ok is false when none is owed.
func (s *Session) AckDue() (at time.Duration, ok bool) { return s.ackAt, s.ackPending }

// AppendAck appends the ACK of everything processed to dst if one is owed
// and the session is logged in, and returns the extended slice. The ACK
// names no seq above what this connection may acknowledge (PROTOCOL.md 8.4:
// WELCOME.last, or an entry received on it); the rest goes once it may.
func (s *Session) AppendAck(dst []byte) []byte {
	s.ackPending = false
	s.ackEntries, s.ackBytes = 0, 0
	seq := min(s.done, max(s.recv, s.last))
	if s.state != stateReady || seq <= s.acked {
		return dst
	}
	s.acked = seq
	a := protocol.Ack{Seq: seq}
	return a.Append(dst)
}

// --- Sending ---

// NextMsgID returns the msg_id the next NewMsgID returns. Persist it before
// a message with the previous id goes out, so that no id is used twice.
func (s *Session) NextMsgID() uint64 { return max(s.nextID, 1) }

// NewMsgID takes the next msg_id from the counter.
func (s *Session) NewMsgID() uint64 {
	id := max(s.nextID, 1)
	s.nextID = id + 1
	return id
}

// Queue takes the next msg_id and puts it in the outbox, to be written when
// NextSend returns it.
func (s *Session) Queue() uint64 {
	id := s.NewMsgID()
	s.push(pending{id: id})
	return id
}

// Add puts msg_id id in the outbox. Ids must rise: an id at or below the
// last in the outbox is ErrMsgIDOrder. tried says the message may have been
// written before (an outbox restored after a restart, PROTOCOL.md 8.5): it
// then goes with flag B. The counter moves past id.
func (s *Session) Add(id uint64, tried bool) error {
	if id == 0 || (len(s.out) > 0 && id <= s.out[len(s.out)-1].id) {
		return ErrMsgIDOrder
	}
	var st uint8
	if tried {
		st = pendTried
	}
	s.push(pending{id: id, st: st})
	s.nextID = max(s.nextID, id+1)
	return nil
}

// NextSend returns the next message of the outbox to write at now, and
// whether it goes with flag B (retry: it may have been written before). ok
// is false when none may go: not logged in, a RETRY_LATER's delay running
// (Held), or every entry written or waiting for its retry_after. Messages
// come in msg_id order, so after a reconnect or a RETRY_LATER the ones
// written before go first. NextSend marks the message written.
func (s *Session) NextSend(now time.Duration) (id uint64, retry, ok bool) {
	if s.state != stateReady || now < s.holdUntil {
		return 0, false, false
	}
	if now >= s.retryAt {
		s.cur, s.retryAt = 0, never
	}
	for ; s.cur < len(s.out); s.cur++ {
		p := &s.out[s.cur]
		if p.st&(pendWritten|pendDone) != 0 {
			continue
		}
		if now < p.due {
			s.retryAt = min(s.retryAt, p.due)
			continue
		}
		retry = p.st&pendTried != 0
		p.st |= pendWritten | pendTried
		s.cur++
		return p.id, retry, true
	}
	return 0, false, false
}

// Held reports whether a RETRY_LATER's retry_after still runs at now: the
// server is busy, and the connection's new messages wait in the outbox
// (PROTOCOL.md 8.5).
func (s *Session) Held(now time.Duration) bool { return now < s.holdUntil }

// Accepted records an ACCEPT: every msg_id of its run leaves the outbox. It
// returns how many of them were in it.
func (s *Session) Accepted(a *protocol.Accept) int {
	i := s.find(a.MsgID)
	n := 0
	for ; i < len(s.out) && s.out[i].id-a.MsgID <= a.More; i++ {
		if s.out[i].st&pendDone == 0 {
			s.out[i].st |= pendDone
			n++
		}
	}
	s.trim()
	return n
}

// Refused records a REFUSE at now and reports whether the message stays in
// the outbox to go again: with retry_after > 0 it is written again (flag B)
// no sooner than retry_after after now, and a RETRY_LATER also holds every
// other message of the connection until then (PROTOCOL.md 8.5). With
// retry_after 0 the message failed for good and leaves the outbox. false
// too for an id not in the outbox.
func (s *Session) Refused(r *protocol.Refuse, now time.Duration) (retry bool) {
	i := s.find(r.MsgID)
	if i == len(s.out) || s.out[i].id != r.MsgID || s.out[i].st&pendDone != 0 {
		return false
	}
	p := &s.out[i]
	if r.RetryAfter == 0 {
		p.st |= pendDone
		s.trim()
		return false
	}
	p.st &^= pendWritten
	p.due = now + time.Duration(r.RetryAfter)*time.Millisecond
	if r.Code == protocol.CodeRetryLater {
		s.holdUntil = max(s.holdUntil, p.due)
	}
	if i < s.cur {
		s.retryAt = min(s.retryAt, p.due)
	}
	return true
}

// Pending returns how many messages the outbox holds: not yet ACCEPTed nor
// refused for good.
func (s *Session) Pending() int {
	n := 0
	for i := range s.out {
		if s.out[i].st&pendDone == 0 {
			n++
		}
	}
	return n
}

// Outbox calls yield with each msg_id in the outbox, in order, until it
// returns false: what the application persists besides the counter.
func (s *Session) Outbox(yield func(id uint64) bool) {
	for i := range s.out {
		if s.out[i].st&pendDone == 0 && !yield(s.out[i].id) {
			return
		}
	}
}

// NextWake returns when the session next has something to do: an ACK due
// (AppendAck), or a hold or a retry_after ending (NextSend); ok is false when
// nothing is scheduled. A time at or before now means at once. Besides these
// timers, a driver calls NextSend after Queue, Welcome and Refused.
func (s *Session) NextWake(now time.Duration) (at time.Duration, ok bool) {
	at = never
	if s.ackPending {
		at = s.ackAt
	}
	if send, ok := s.SendDue(now); ok {
		at = min(at, send)
	}
	return at, at != never
}

// SendDue returns when NextSend may next give a message of the outbox
// without anything new being queued: the end of a RETRY_LATER's hold, or
// the earliest retry_after of a refused message; ok is false when neither
// runs (or the session is not logged in: Welcome makes messages due). It is
// the sending half of NextWake, for a driver that schedules ACKs itself.
func (s *Session) SendDue(now time.Duration) (at time.Duration, ok bool) {
	if s.state != stateReady {
		return never, false
	}
	at = s.retryAt
	if now < s.holdUntil {
		at = s.holdUntil
	}
	return at, at != never
}

// push appends p to the outbox. When the array is full but ACCEPTs freed at
// least half of it at the front, the entries move down instead of growing
// it: a steady flow of sends and ACCEPTs then allocates nothing.
func (s *Session) push(p pending) {
	if len(s.out) == cap(s.out) && len(s.out) > 0 && cap(s.arr) >= 2*len(s.out) {
		n := copy(s.arr[:cap(s.arr)], s.out)
		s.out = s.arr[:n]
	}
	if len(s.out) == cap(s.out) {
		s.arr = make([]pending, len(s.out), max(2*len(s.out), 8))
		copy(s.arr, s.out)
		s.out = s.arr
	}
	s.out = append(s.out, p)
}

// find returns the index of the first outbox entry with an id at or above
// id (len(out) if none): a binary search, the ids being ascending.
func (s *Session) find(id uint64) int {
	lo, hi := 0, len(s.out)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if s.out[m].id < id {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo
}

// trim drops done entries from the front of the outbox, and lets go of the
// array when it empties so that an idle session holds none.
func (s *Session) trim() {
	n := 0
	for n < len(s.out) && s.out[n].st&pendDone != 0 {
		n++
	}
	if n == 0 {
		return
	}
	if n == len(s.out) {
		s.out = s.arr[:0]
		if cap(s.arr) > 64 {
			s.out, s.arr = nil, nil
		}
		s.cur = 0
		return
	}
	s.out = s.out[n:]
	s.cur = max(s.cur-n, 0)
}

func (s *Session) rand(n int64) int64 {
	if n <= 0 {
		return 0
	}
	if s.cfg.Rand != nil {
		return s.cfg.Rand(n)
	}
	return rand.Int64N(n)
}

func (s *Session) ackEvery() int {
	if s.cfg.AckEvery > 0 {
		return s.cfg.AckEvery
	}
	return max(int(s.window/2), 1)
}

func (s *Session) ackBytesMax() int {
	if s.cfg.AckBytes > 0 {
		return s.cfg.AckBytes
	}
	return DefaultAckBytes
}

func (s *Session) ackDelay() time.Duration {
	if s.cfg.AckDelay > 0 {
		return s.cfg.AckDelay
	}
	return DefaultAckDelay
}

func (s *Session) minBackoff() time.Duration {
	if s.cfg.MinBackoff > 0 {
		return s.cfg.MinBackoff
	}
	return DefaultMinBackoff
}

func (s *Session) maxBackoff() time.Duration {
	if s.cfg.MaxBackoff > 0 {
		return s.cfg.MaxBackoff
	}
	return DefaultMaxBackoff
}

func (s *Session) stableAfter() time.Duration {
	if s.cfg.StableAfter > 0 {
		return s.cfg.StableAfter
	}
	return DefaultStableAfter
}
