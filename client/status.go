package client

import "time"

// State is where a Conn's connection stands, for a status line.
type State uint8

// States of a Conn, in the order a connection goes through them.
const (
	// StateOffline: no connection; the next attempt starts at Status.Retry.
	StateOffline State = iota
	// StateLogin: dialling, or LOGIN written and WELCOME not yet read.
	StateLogin
	// StateResuming: logged in; the entries the mailbox held at login
	// (up to WELCOME.last, Status.Last) are not all processed yet.
	StateResuming
	// StateCaughtUp: logged in, and every entry the mailbox held at login
	// is processed: what arrives now is live.
	StateCaughtUp
	// StateClosed: Close was called, or the session ended for good
	// (REPLACED, BAD_TOKEN…; Status.Err says which).
	StateClosed
)

func (s State) String() string {
	switch s {
	case StateOffline:
		return "offline"
	case StateLogin:
		return "logging in"
	case StateResuming:
		return "resuming"
	case StateCaughtUp:
		return "caught up"
	case StateClosed:
		return "closed"
	}
	return "unknown"
}

// Status is a snapshot of a Conn's connection and session.
type Status struct {
	State State
	// Last is WELCOME.last of the current (or last) connection: the newest
	// entry waiting at login, or the resume point when none waited. While
	// resuming, Resume climbs to it. In the rare cases PROTOCOL.md 8.1
	// lists (the entry at last expiring before it was sent, a restored
	// mailbox with over 1,024 entries) the state stays resuming until a
	// later entry arrives.
	Last uint64
	// Resume is the resume point: the highest seq processed.
	Resume uint64
	// Pending is how many messages and GROUP requests wait for their ACCEPT.
	Pending int
	// Err is why the last connection ended or the last attempt failed, while
	// offline or logging in again, and why the session ended once closed;
	// nil while logged in.
	Err error
	// Retry is when the next attempt starts, while offline.
	Retry time.Time
	// Handshake is the Noise handshake pattern of the current or last
	// connection (noise.PatternXX, PatternIK or PatternXXfallback); "" on
	// the plain transport or before any Noise handshake finished.
	Handshake string
}

// Status returns where the connection stands. Any goroutine may call it.
func (c *Conn) Status() Status {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := Status{State: c.state, Last: c.last, Resume: c.sess.Resume(), Pending: c.sess.Pending(), Err: c.err, Handshake: c.shake}
	if c.state == StateOffline {
		st.Retry = c.retry
	}
	return st
}

// Changed returns a channel that receives when Status changed since it last
// received: a watcher reads Status after each receive. Changes that come
// while nobody reads merge into one, so it never blocks the Conn. The
// channel is the same for the Conn's life; it is not closed.
func (c *Conn) Changed() <-chan struct{} { return c.changed }

// notify wakes a watcher of Changed; it never blocks.
func (c *Conn) notify() {
	select {
	case c.changed <- struct{}{}:
	default:
	}
}

// setState records a new state and why, and wakes a watcher.
func (c *Conn) setState(s State, err error) {
	c.mu.Lock()
	c.state, c.err = s, err
	c.notify()
	c.mu.Unlock()
}

// offline records that the connection ended (or an attempt failed) with
// err, and that the next attempt starts after delay.
func (c *Conn) offline(err error, delay time.Duration) {
	c.mu.Lock()
	c.state, c.err, c.retry = StateOffline, err, time.Now().Add(delay)
	c.notify()
	c.mu.Unlock()
}

// end records that the session ended for good with cause; run returns right
// after, closing ended.
func (c *Conn) end(cause error) {
	c.cause = cause
	c.setState(StateClosed, cause)
}
