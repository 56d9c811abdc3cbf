package bench

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"golang.org/x/sys/unix"

	"switchboard/client"
	"switchboard/protocol"
)

// Connection states.
const (
	stateIdle       uint8 = iota // never dialled
	stateConnecting              // TCP connect in progress
	stateHandshake               // preface and LOGIN written, waiting for WELCOME
	stateReady                   // logged in
	stateClosed                  // closed; may be dialled again
)

// conn is one simulated client: a socket, its session, and the correctness
// state of what it sent and received. Owned by its loop.
type conn struct {
	l      *loop
	idx    int32
	member int32 // index in unit.conns
	user   uint64
	unit   *unit
	// copies records, for each group message of this sender still tracked
	// (in out), which members have a copy: a bit per member of the unit.
	// A count alone lets one member's duplicate hide another's loss.
	copies map[uint64][]uint64
	home   int // index in Spec.Servers of the server the user logs in to: its unit's, or in a cluster its home node

	// Socket and session.
	nz          *noiseState // the Noise transport of the current connection; nil: plain
	fd          int
	state       uint8
	paused      bool  // stopped reading (the slow scenario)
	autoRedial  bool  // dial again when the server closes the connection
	dialStart   int64 // when the current dial began
	lastWrite   int64
	reconnectAt int64 // when to dial again after a close; 0: not scheduled
	attempts    int   // failed dials in a row
	gaveUp      bool  // could not log in within Spec.Retries: what was sent to it is not checked
	ping        int64 // granted keepalive interval, ns
	rpend       []byte
	wpend       []byte // bytes the kernel did not take yet
	obuf        []byte // frames of this iteration, written by loop.flush
	isDirty     bool
	capSec      int64 // the second capCount counts
	capCount    int   // frames written in capSec

	// redirect is where a GOAWAY MOVED sent this user (PROTOCOL.md 8.10):
	// dials go there instead of l.servers[home] until one fails. nil:
	// none. One of l.servers when the address is one of the run's servers.
	redirect unix.Sockaddr

	// The client's session state machine: the outbox (what is written
	// when, with flag B or without, held back after RETRY_LATER), the ACK
	// schedule, the resume point (LOGIN.ack) and the reconnect delays.
	// Times are l.now.
	sess   client.Session
	wakeAt int64 // when the session's next send is due (the connection is on loop.wakes); 0: not queued

	// Receiving.
	lastSeq     uint64 // highest mailbox seq processed
	ackedSeq    uint64 // highest seq acknowledged
	sessSeq     uint64 // highest seq seen in this session (redeliveries included)
	welcomeLast uint64 // WELCOME.Last of this session
	ackDue      int64  // when the pending ACK goes out (the connection is on loop.acks); 0: not queued
	ackNow      bool   // the session asked for the ACK at once: it goes after this read
	holdAcks    bool   // do not acknowledge (storm fill: leave entries to redeliver)
	streams     []stream

	// Sending: out[i] is the message with id outBase+i.
	outBase    uint64
	out        []msgState
	counter    uint64 // body counter of the next send
	inflight   int    // closed loop: sent and not yet delivered to every recipient; phone: not yet accepted
	quota      int    // fixed-count traffic: messages still to send
	blockedCap bool   // on loop.blocked
	sending    bool   // a sender of the current traffic step
	stepWait   bool   // the current connect step waits for this connection
	untimed    bool   // deliveries to this receiver are not timed (it was made slow)

	// Phone regime (traffic.startPhone): the sender's place in the loop's
	// slots, its slots passed and its messages sent for them.
	phoneIdx  int
	slotsDue  int64
	slotsSent int64
	slotAt    []int64 // with poisson arrivals: the times of the slots due and not sent, oldest first
}

// stream is what a receiver knows about one sender: the body counter of
// the last message it delivered.
type stream struct {
	from uint64
	last uint64
}

// msgState is a sent message, kept until it is accepted, delivered to
// every recipient, and the delivered receipt of every copy has come back.
// 16 bytes: a sender keeps one per message in flight or awaiting receipts.
type msgState struct {
	sent     int64  // intended send time, ns on the engine's clock
	recips   uint16 // copies delivered (one per recipient)
	receipts uint16 // delivered receipts received, one per copy; at most recips
	accepted bool
	settled  bool // refused for good: never expected
	refused  bool // refused at least once, to be sent again: the server answered it
}

// Message bodies start with a header the receiver checks:
//
//	run id uint64 | sender's counter uint64 | intended send time int64 (ns)
//
// (big endian), then filler up to --size. The run id tells this run's
// messages from those a previous run left in the mailboxes.
const bodyHeaderLen = 24

// dial opens a socket and starts a non-blocking connect. Loop-only.
func (c *conn) dial() {
	l := c.l
	spec := &l.e.spec
	c.state = stateConnecting
	c.dialStart = l.now
	c.sessSeq, c.welcomeLast = 0, 0
	c.rpend, c.wpend, c.obuf = nil, nil, nil
	c.nz = nil
	to, family := l.servers[c.home], l.e.family
	if c.redirect != nil {
		to, family = c.redirect, unix.AF_INET
		if _, ok := to.(*unix.SockaddrInet6); ok {
			family = unix.AF_INET6
		}
	}
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		c.fd = -1
		c.fail("socket: " + err.Error())
		return
	}
	c.fd = fd
	unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
	if l.source != nil {
		// Let connect choose the port, per destination: each source address
		// then offers the whole ephemeral range to this server.
		unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_BIND_ADDRESS_NO_PORT, 1)
		if err := unix.Bind(fd, l.source); err != nil {
			c.fail(fmt.Sprintf("bind %s: %v", spec.Source, err))
			return
		}
	}
	err = unix.Connect(fd, to)
	if err != nil && !errors.Is(err, unix.EINPROGRESS) {
		c.fail("connect: " + err.Error())
		return
	}
	ev := unix.EpollEvent{Events: unix.EPOLLOUT | unix.EPOLLIN | unix.EPOLLRDHUP, Fd: int32(fd), Pad: c.idx}
	if err := unix.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		c.fail("epoll: " + err.Error())
		return
	}
}

// connected finishes the connect and writes the preface and LOGIN.
func (c *conn) connected() {
	if errno, err := unix.GetsockoptInt(c.fd, unix.SOL_SOCKET, unix.SO_ERROR); err != nil || errno != 0 {
		if err == nil {
			err = unix.Errno(errno)
		}
		c.fail("connect: " + err.Error())
		return
	}
	l := c.l
	c.state = stateHandshake
	c.setEvents(false)
	expiry := time.Now().Add(24 * time.Hour)
	c.ackedSeq = c.sess.Resume()
	if l.e.spec.Noise != "" {
		c.startNoise(expiry)
		return
	}
	l.tok = mintToken(l.tok[:0], l.e.spec.Servers[c.home].Key, c.user, expiry)
	c.obuf = c.sess.AppendLogin(c.obuf, protocol.Login{Token: l.tok, Ping: uint32(l.e.spec.Ping / time.Second)})
	c.wrote()
}

// setEvents sets the epoll interest: reads unless paused, writes if out.
func (c *conn) setEvents(out bool) {
	ev := unix.EpollEvent{Events: unix.EPOLLRDHUP, Fd: int32(c.fd), Pad: c.idx}
	if !c.paused {
		ev.Events |= unix.EPOLLIN
	}
	if out {
		ev.Events |= unix.EPOLLOUT
	}
	unix.EpollCtl(c.l.epfd, unix.EPOLL_CTL_MOD, c.fd, &ev)
}

// wrote marks that frames were appended to obuf: they go out at the end of
// the loop's iteration, and count against the frame cap.
func (c *conn) wrote() {
	l := c.l
	if !c.isDirty {
		c.isDirty = true
		l.dirty = append(l.dirty, c)
	}
	c.lastWrite = l.now
	sec := l.now / int64(time.Second)
	if c.capSec != sec {
		c.capSec, c.capCount = sec, 0
	}
	c.capCount++
}

// capped reports whether c may send no more frames this second.
func (c *conn) capped() bool {
	sec := c.l.now / int64(time.Second)
	return c.capSec == sec && c.capCount >= c.l.e.spec.ConnFrameCap
}

// writeOut writes b (a loop buffer) to the socket, keeping what the kernel
// does not take.
func (c *conn) writeOut(b []byte) {
	if len(c.wpend) > 0 {
		c.wpend = append(c.wpend, b...)
		return
	}
	n, err := unix.Write(c.fd, b)
	if err != nil && !errors.Is(err, unix.EAGAIN) {
		c.lost("write: " + err.Error())
		return
	}
	n = max(n, 0)
	c.l.res.BytesOut += uint64(n)
	if n < len(b) {
		c.wpend = append(c.wpend, b[n:]...)
		c.setEvents(true)
	}
}

func (c *conn) writePending() {
	n, err := unix.Write(c.fd, c.wpend)
	if err != nil && !errors.Is(err, unix.EAGAIN) {
		c.lost("write: " + err.Error())
		return
	}
	n = max(n, 0)
	c.l.res.BytesOut += uint64(n)
	c.wpend = c.wpend[n:]
	if len(c.wpend) == 0 {
		c.wpend = nil
		c.setEvents(false)
	}
}

// readAll reads until the socket is empty and handles every whole frame.
func (c *conn) readAll() {
	l := c.l
	buf := l.rbuf
	have := copy(buf, c.rpend)
	c.rpend = c.rpend[:0]
	for reads := 0; reads < 8; reads++ {
		n, err := unix.Read(c.fd, buf[have:])
		if n > 0 {
			l.res.BytesIn += uint64(n)
			have += n
			off := c.input(buf[:have])
			if c.fd < 0 {
				return
			}
			have = copy(buf, buf[off:have])
			if have < len(buf)/2 && n < len(buf)/4 {
				break // the socket is very likely empty
			}
			continue
		}
		if n == 0 || (err != nil && !errors.Is(err, unix.EAGAIN) && !errors.Is(err, unix.EINTR)) {
			reason := "closed by the server without an ERROR frame"
			if err != nil {
				reason = "read: " + err.Error()
			}
			c.lost(reason)
			return
		}
		break
	}
	if have > 0 {
		c.rpend = append(c.rpend, buf[:have]...)
	} else if cap(c.rpend) > 4<<10 {
		c.rpend = nil
	}
	c.afterRead()
}

// input handles what was read, b, and returns the bytes used.
func (c *conn) input(b []byte) int {
	if c.nz != nil {
		return c.noiseInput(b)
	}
	return c.frames(b)
}

// frames handles every whole frame in b and returns the bytes used.
func (c *conn) frames(b []byte) int {
	off := 0
	for off < len(b) {
		f, n, err := protocol.ReadFrame(b[off:], protocol.MaxServerFrame)
		if errors.Is(err, protocol.ErrIncomplete) {
			break
		}
		if err == nil {
			err = c.frame(f)
		}
		if err != nil {
			c.protocolError(err)
			return off
		}
		off += n
		if c.fd < 0 {
			return off
		}
	}
	return off
}

// protocolError ends a connection that sent something the client cannot
// accept: that is a server bug, and fails the run.
func (c *conn) protocolError(err error) {
	c.l.failure(fmt.Sprintf("user %d: server sent a bad frame: %v", c.user, err))
	if c.nz == nil || c.nz.sess != nil { // a Noise handshake that failed has no channel to say why
		e := protocol.Error{Code: protocol.CodeOf(err), Reason: err.Error()}
		c.obuf = e.Append(c.obuf)
		c.writeFrames(c.obuf)
	}
	c.obuf = c.obuf[:0]
	c.lost(reasonProtocolError)
}

// frame handles one frame. f aliases the loop's read buffer.
func (c *conn) frame(f protocol.Frame) error {
	if f.Has(protocol.FlagCompressed) {
		return fmt.Errorf("%w: compressed %v without a dictionary", protocol.ErrDecompress, f.Type)
	}
	if c.state == stateHandshake {
		switch f.Type {
		case protocol.TypeWelcome:
			var w protocol.Welcome
			if err := w.Decode(f); err != nil {
				return err
			}
			c.welcomed(&w)
			return nil
		case protocol.TypeError, protocol.TypeGoAway:
		default:
			return fmt.Errorf("%w: %v before WELCOME", protocol.ErrMalformed, f.Type)
		}
	}
	switch f.Type {
	case protocol.TypeDeliver:
		var d protocol.Deliver
		if err := d.Decode(f); err != nil {
			return err
		}
		c.entry(d.Seq, len(f.Payload))
		c.deliver(&d)
	case protocol.TypeBatch:
		var br protocol.BatchReader
		var d protocol.Deliver
		var x protocol.Receipt
		br.Reset(f)
		for br.Next() {
			c.entry(br.Seq(), batchEntrySize)
			switch br.Type() {
			case protocol.TypeDeliver:
				if err := br.Deliver(&d); err != nil {
					return err
				}
				c.deliver(&d)
			case protocol.TypeReceipt:
				if err := br.Receipt(&x); err != nil {
					return err
				}
				c.receipt(&x)
			}
		}
		return br.Err()
	case protocol.TypeReceipt:
		var x protocol.Receipt
		if err := x.Decode(f); err != nil {
			return err
		}
		c.entry(x.Seq, len(f.Payload))
		c.receipt(&x)
	case protocol.TypeGroupEvent:
		seq, _ := uvarint(f.Payload)
		c.entry(seq, len(f.Payload))
	case protocol.TypeAccept:
		var a protocol.Accept
		if err := a.Decode(f); err != nil {
			return err
		}
		c.accepted(&a)
	case protocol.TypeRefuse:
		var r protocol.Refuse
		if err := r.Decode(f); err != nil {
			return err
		}
		c.refused(&r)
	case protocol.TypePong, protocol.TypeSignal:
	case protocol.TypeGoAway:
		var g protocol.GoAway
		if err := g.Decode(f); err != nil {
			return err
		}
		c.sess.GoAway(&g)
		c.closedBy(g.Code)
	case protocol.TypeError:
		var e protocol.Error
		if err := e.Decode(f); err != nil {
			return err
		}
		c.closedBy(e.Code)
	default:
		return fmt.Errorf("%w: unexpected %v", protocol.ErrMalformed, f.Type)
	}
	return nil
}

func uvarint(b []byte) (uint64, int) {
	var v uint64
	for i, x := range b {
		if i == 10 {
			return 0, 0
		}
		v |= uint64(x&0x7f) << (7 * i)
		if x < 0x80 {
			return v, i + 1
		}
	}
	return 0, 0
}

// welcomed completes a login.
func (c *conn) welcomed(w *protocol.Welcome) {
	l := c.l
	c.state = stateReady
	c.attempts = 0
	c.sess.Welcome(w, time.Duration(l.now))
	c.welcomeLast = w.Last
	c.ping = int64(w.Ping) * int64(time.Second)
	l.prog.ready.Add(1)
	l.prog.logins.Add(1)
	record(l.res.LoginLatency, l.now-c.dialStart)
	c.pump() // what the last connection left unconfirmed, with flag B
	c.checkWait()
	c.fillWindow()
}

// checkWait counts c done for a connect step once it is logged in (and,
// when the step asks, has received its whole backlog).
func (c *conn) checkWait() {
	if c.stepWait && c.state == stateReady && (!c.l.waitDrain || c.sessSeq >= c.welcomeLast) {
		c.stepWait = false
		c.l.waiting--
	}
}

// gaveUpWait counts c done for a connect step when it will not log in.
func (c *conn) gaveUpWait() {
	c.l.gaveUp++
	c.gaveUp = true
	if c.stepWait {
		c.stepWait = false
		c.l.waiting--
	}
}

// batchEntrySize stands for the size of an entry of a BATCH in the ACK's
// byte threshold: the reader does not expose it, and the entry threshold
// (ackEvery) comes first for the bench's bodies anyway.
const batchEntrySize = 128

// entry notes mailbox entry seq, size bytes: the bench checks it at once,
// so it is processed as soon as it is read, and its ACK is scheduled (the
// session coalesces them). Entries at or below lastSeq are redeliveries
// after a reconnect, which the server may make: delivery is at least once.
//
// Within one session seqs must rise: the server sends a recipient's entries
// in seq order, and sends one again only to a new connection.
func (c *conn) entry(seq uint64, size int) {
	if seq <= c.sessSeq {
		c.l.res.Reordered++
		c.l.failure(fmt.Sprintf("user %d: mailbox seq %d after seq %d on the same connection", c.user, seq, c.sessSeq))
	}
	c.sessSeq = max(c.sessSeq, seq)
	c.l.lastEntry = c.l.now
	c.sess.Entry(seq)
	if !c.holdAcks {
		if c.sess.Processed(seq, size, time.Duration(c.l.now)) {
			c.ackNow = true
		}
		c.scheduleAck()
	}
}

// scheduleAck queues c on loop.acks for the ACK the session owes.
func (c *conn) scheduleAck() {
	if c.holdAcks || c.ackDue != 0 {
		return
	}
	if at, ok := c.sess.AckDue(); ok {
		c.ackDue = max(int64(at), 1)
		c.l.acks = append(c.l.acks, c)
	}
}

// afterRead sends the pending ACK at once when the session asks for it
// (ackEvery entries or 64 KiB wait). The connection stays on loop.acks; its
// turn there finds nothing to send.
func (c *conn) afterRead() {
	if c.ackNow {
		c.sendAck()
	}
	c.checkWait()
}

// sendAck acknowledges everything processed.
func (c *conn) sendAck() {
	c.ackDue = 0
	c.ackNow = false
	if c.holdAcks {
		return
	}
	n := len(c.obuf)
	c.obuf = c.sess.AppendAck(c.obuf)
	if len(c.obuf) > n {
		c.wrote()
		c.ackedSeq = c.sess.Resume()
	}
}

// target returns where c's messages go.
func (c *conn) target() (to uint64, group bool) {
	if c.unit.group != 0 {
		return c.unit.group, true
	}
	for _, p := range c.unit.conns {
		if p != c {
			return p.user, false
		}
	}
	return 0, false
}

// send queues a new message with the given intended send time in the
// session's outbox, and writes what the session lets go.
func (c *conn) send(intended int64) {
	l := c.l
	if id := c.sess.Queue(); id != c.outBase+uint64(len(c.out)) {
		// The outbox and out count the same messages from the same base.
		l.e.fatal(fmt.Errorf("user %d: the session gave msg id %d, the bench expected %d", c.user, id, c.outBase+uint64(len(c.out))))
		return
	}
	c.out = append(c.out, msgState{sent: intended})
	c.inflight++
	l.unaccepted++
	l.pending++
	l.prog.pending.Add(1)
	l.res.Sent++
	l.prog.sent.Add(1)
	c.pump()
}

// pump writes every message the session lets go now, in msg_id order: new
// ones, those a lost connection left unconfirmed (after WELCOME) and refused
// ones whose retry_after has passed, the last two with flag B. Nothing goes
// while a RETRY_LATER holds the connection (PROTOCOL.md 8.5). When the
// frame cap stops it, the connection waits on loop.blocked; when a hold or
// a retry_after runs, on loop.wakes.
func (c *conn) pump() {
	l := c.l
	if c.state != stateReady {
		return
	}
	for {
		if c.capped() {
			c.block()
			return
		}
		id, retry, ok := c.sess.NextSend(time.Duration(l.now))
		if !ok {
			break
		}
		if retry {
			l.res.Resent++
		}
		c.writeSend(id, retry)
	}
	if at, ok := c.sess.SendDue(time.Duration(l.now)); ok && (c.wakeAt == 0 || int64(at) < c.wakeAt) {
		c.wakeAt = max(int64(at), 1)
		l.wakes.push(wake{c: c, at: c.wakeAt})
	}
}

// block puts c on loop.blocked, where the next housekeeping finds it once
// the frame cap's second has passed.
func (c *conn) block() {
	if !c.blockedCap {
		c.blockedCap = true
		c.l.blocked = append(c.l.blocked, c)
	}
}

// writeSend appends the SEND of message id to obuf, with a new body counter
// so that the receivers' order check follows the order of writes; retry
// sets flag B, which only resends carry (a first send skips the server's
// duplicate lookup). The unit's GROUP create goes through the outbox too.
func (c *conn) writeSend(id uint64, retry bool) {
	l := c.l
	if c.isGroupReq(id) {
		g := groupCreate(id, c.unit.members())
		c.obuf = g.Append(c.obuf)
		c.wrote()
		return
	}
	to, group := c.target()
	m := &c.out[id-c.outBase]
	body := l.body
	putBE64(body, l.e.spec.RunID)
	putBE64(body[8:], c.counter+1)
	putBE64(body[16:], uint64(m.sent))
	c.counter++
	s := protocol.Send{MsgID: id, To: to, Group: group, Retry: retry, Body: body}
	c.obuf = s.Append(c.obuf)
	c.wrote()
}

// fillWindow keeps a closed-loop sender's window full, or sends what is left
// of a fixed count.
func (c *conn) fillWindow() {
	l := c.l
	t := &l.traffic
	if t.phone {
		c.sendOwed()
		return
	}
	if !t.active || t.rate > 0 || !c.sending || c.state != stateReady {
		return
	}
	for c.inflight < t.window && (t.count == 0 || c.quota > 0) {
		if c.capped() {
			c.block()
			return
		}
		if c.quota > 0 {
			c.quota--
		}
		c.send(l.now)
	}
}

// fail handles a dial or login that did not work: retry a few times, at
// the run's server again if it was a redirect's.
func (c *conn) fail(reason string) {
	l := c.l
	if c.fd >= 0 {
		c.closeFD()
	}
	c.state = stateClosed
	c.redirect = nil
	c.attempts++
	if c.attempts > l.e.spec.Retries {
		l.failure(fmt.Sprintf("user %d could not log in to %s: %s", c.user, l.e.spec.Servers[c.home].Addr, reason))
		c.gaveUpWait()
		return
	}
	d, _ := c.sess.Closed(0, time.Duration(l.now))
	c.reconnectAt = l.now + max(int64(d), 1)
}

// closedBy handles ERROR or GOAWAY from the server.
func (c *conn) closedBy(code protocol.Code) {
	l := c.l
	if l.res.Closes == nil {
		l.res.Closes = map[string]uint64{}
	}
	l.res.Closes[code.String()]++
	if c.state == stateHandshake && (code == protocol.CodeBadToken || code == protocol.CodeTokenExpired) {
		l.e.fatal(fmt.Errorf("server %s refused the login token (%v): is --keys the keys file of this server's data folder?", l.e.spec.Servers[c.home].Addr, code))
	}
	if c.state == stateHandshake && code == protocol.CodeUnsupportedTransport {
		l.e.fatal(fmt.Errorf("server %s does not offer the transport asked for (%v): --noise needs a server whose --transport is noise, both or auto, and plain one whose --transport is plain or both, or auto on a loopback address", l.e.spec.Servers[c.home].Addr, code))
	}
	c.down(code)
}

// lost handles a connection that ended without ERROR: the server closed
// it (counted under EOF), or the bench did over a bad frame (reason
// "protocol error"; the run's failures list it, and it is not counted as
// closed by the server).
func (c *conn) lost(reason string) {
	l := c.l
	if c.state == stateConnecting || c.state == stateHandshake {
		c.fail(reason)
		return
	}
	if reason != reasonProtocolError {
		if l.res.Closes == nil {
			l.res.Closes = map[string]uint64{}
		}
		l.res.Closes["EOF"]++
	}
	c.down(0)
}

// reasonProtocolError is lost's reason for a connection the bench ended
// over a bad frame.
const reasonProtocolError = "protocol error"

// closedUnread handles a paused connection that the server closed: reading
// what it left only to find the ERROR frame and its code.
func (c *conn) closedUnread() {
	c.paused = false
	c.readAll()
	if c.fd >= 0 {
		c.lost("closed while not reading")
	}
}

// down closes the socket and schedules a new dial, after the session's
// delay (PROTOCOL.md 8.9, 8.10), if the connection should stay up. code is
// the server's ERROR or GOAWAY, 0 for none.
func (c *conn) down(code protocol.Code) {
	l := c.l
	wasHandshake := c.state == stateHandshake
	if c.state == stateReady {
		l.prog.ready.Add(-1)
	}
	c.closeFD()
	c.state = stateClosed
	d, again := c.sess.Closed(code, time.Duration(l.now))
	if addr, ok := c.sess.Redirect(); ok {
		// A redirect is not a failed attempt: dial the home it names after
		// the session's short delay.
		if c.redirect = l.redirectTo(addr); c.redirect != nil {
			if c.autoRedial {
				c.reconnectAt = l.now + max(int64(d), 1)
			}
			return
		}
		l.failure(fmt.Sprintf("user %d redirected to %q: not an IP address and port, nor one of --addr", c.user, addr))
	}
	if wasHandshake {
		c.redirect = nil // back to the run's server
		c.attempts++
		if c.attempts > l.e.spec.Retries {
			l.failure(fmt.Sprintf("user %d could not log in", c.user))
			c.gaveUpWait()
			return
		}
	}
	if c.autoRedial && again {
		c.reconnectAt = l.now + max(int64(d), 1)
	}
}

// redirectTo returns the socket address of a GOAWAY MOVED's addr: one of
// l.servers when addr names one of the run's servers (as --addr spells it,
// or resolved), else a new one for an IP address and port; nil for a host
// name that is not one of --addr (the loop does not resolve names).
func (l *loop) redirectTo(addr string) unix.Sockaddr {
	for i, t := range l.e.spec.Servers {
		if t.Addr == addr && i < len(l.servers) {
			return l.servers[i]
		}
	}
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return nil
	}
	ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	for i, s := range l.e.servers {
		if s == ap && i < len(l.servers) {
			return l.servers[i]
		}
	}
	return sockaddr(ap)
}

// drop closes the connection on purpose, without a goodbye.
func (c *conn) drop() {
	if c.state == stateReady {
		c.l.prog.ready.Add(-1)
	}
	c.autoRedial = false
	c.reconnectAt = 0
	if c.fd >= 0 {
		c.closeFD()
	}
	c.state = stateClosed
	c.sess.Closed(0, time.Duration(c.l.now))
}

func (c *conn) closeFD() {
	unix.EpollCtl(c.l.epfd, unix.EPOLL_CTL_DEL, c.fd, nil)
	unix.Close(c.fd)
	c.fd = -1
	c.rpend, c.wpend, c.obuf = nil, nil, c.obuf[:0]
	c.ackDue = 0
	c.ackNow = false
}
