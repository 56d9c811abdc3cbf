package gateway

import (
	"time"

	"switchboard/protocol"
)

// Admission before login.
//
// A connection that has not logged in costs a slot under the connection cap
// and a little memory, and proves nothing. Sockets that never log in could
// otherwise take every slot and lock valid users out, so each loop holds at
// most its share of Config.MaxPreLogin connections before login:
//
//   - While more than half of its share are waiting, a new connection gets
//     Config.HandshakeTimeoutBusy (3 s) instead of HandshakeTimeout to log in.
//   - Past its share, opening one more closes the loop's oldest connection
//     still waiting, with HANDSHAKE_TIMEOUT, and counts it in
//     Stats.PreLoginEvicted.
//
// Evicting the oldest, rather than refusing the newest with a GOAWAY, is
// what lets a valid user in: a client that sends the preface and LOGIN in
// its first write needs its slot for one round trip, while a socket that
// never logs in holds its slot for the whole timeout. Refusing new ones
// would leave the slots to whoever took them first and make every
// legitimate client wait for the attacker's sockets to time out; evicting
// the oldest makes an attacker open connections as fast as the loop
// accepts them to keep a user out, and the oldest waiting socket is the
// one least likely to log in.
//
// The oldest is found in l.waiting, a FIFO of the connections opened
// before login. Entries that have since logged in or closed are skipped
// when they reach the front, and the queue is compacted when it holds over
// twice the live ones, so it stays within twice the share.

// defaultHandshakeTimeoutBusy is Config.HandshakeTimeoutBusy's default:
// three round trips of a slow mobile link (TCP, then the preface and LOGIN
// in one write, then WELCOME) with margin.
const defaultHandshakeTimeoutBusy = 3 * time.Second

// admit registers c, just opened, as waiting for its login: it sets its
// handshake deadline, puts it on the wheel, and evicts the oldest waiting
// connection when the loop is past its share. Loop-only.
func (l *loop) admit(c *conn) {
	cfg := &l.srv.cfg
	share := l.srv.preLoginShare
	timeout := cfg.HandshakeTimeout
	if l.preLogin > share/2 {
		timeout = cfg.HandshakeTimeoutBusy
	}
	c.handshakeDue = l.wheel.now + uint32(timeout/time.Second) + stampSlack
	l.wheel.add(c, c.handshakeDue)
	l.preLogin++
	l.srv.live.preLogin.Add(1)
	l.waiting = append(l.waiting, c)
	for l.preLogin > share && len(l.waiting) > 1 {
		old := l.waiting[0]
		l.waiting[0] = nil
		l.waiting = l.waiting[1:]
		if old == c || !old.waitingLogin() {
			continue
		}
		l.srv.stats.PreLoginEvicted.Add(1)
		l.closeNow(old, protocol.CodeHandshakeTimeout) // OnClose counts it out
	}
	if len(l.waiting) > 2*l.preLogin+16 {
		live := l.waiting[:0]
		for _, w := range l.waiting {
			if w.waitingLogin() {
				live = append(live, w)
			}
		}
		clear(l.waiting[len(live):])
		l.waiting = live
	}
}

// waitingLogin reports whether c is open and has not logged in. Loop-only.
func (c *conn) waitingLogin() bool {
	if c.state >= stateJoining {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return !c.closed
}
