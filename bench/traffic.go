package bench

import (
	"math/rand/v2"
	"time"

	"switchboard/protocol"
)

// traffic is a loop's share of a traffic step. In open loop (rate > 0) the
// k-th message of the loop is due at start + k×interval, whatever happened
// to the ones before it, and its latency is measured from that intended
// time: a stalled server is charged for every message it delayed, not only
// for the first (the coordinated-omission correction). In closed loop each
// sender keeps window messages in flight until they are delivered.
//
// The phone regime is open loop with a window of one accepted message:
// the loop's k-th slot belongs to sender k mod n (n senders on the loop),
// so each sender's messages are due evenly, every n×interval, the senders
// staggered by interval, and the loop's together as evenly as open loop's.
// With Poisson arrivals (Step.Poisson) the gaps between the loop's slots
// are drawn at random, of mean interval, and the slots still go to the
// senders in turn. A sender never has two messages unaccepted, as a phone
// waits for the ACCEPT of its previous message: a slot that comes due
// while the previous message waits is owed, and sent when the ACCEPT
// comes, still timed from its slot, so the wait is charged to the server.
// Slots stop at the deadline; what is owed then may still go out for
// catchUp more, and what is owed after that is counted unsent
// (Result.Unsent).
type traffic struct {
	active   bool
	rate     float64 // messages per second of this loop; 0: closed loop
	interval float64 // ns between messages (between slots, in the phone regime)
	window   int
	// untilAccepted: a message leaves the window when accepted, not when
	// delivered (to fill the mailboxes of absent receivers; the phone regime).
	untilAccepted bool
	count         int   // messages per sender; 0: until deadline
	start         int64 // ns
	deadline      int64 // ns; 0: none
	k             int64 // messages of the schedule sent (slots passed, in the phone regime)
	senders       []*conn

	// blockedUntil: open loop, no sender could take the message due; none
	// can before this (the earliest end of a hold or of a capped second).
	blockedUntil int64

	phone   bool  // the phone regime: a schedule per sender, one message unaccepted at most
	owed    int64 // phone: slots passed whose message is not sent yet, over the senders
	catchUp int64 // phone: ns after the deadline during which owed messages still go out

	// poisson (phone): the loop's slots come at random, the gaps between
	// them drawn from an exponential distribution of mean interval, as
	// phones' sends reach a server; next is the next slot's offset from
	// start, in ns. Each slot's time is kept by its sender (conn.slotAt).
	poisson bool
	rng     *rand.Rand
	next    float64
}

// due returns when the next open-loop message is due.
func (t *traffic) due() int64 {
	if t.poisson {
		return t.start + int64(t.next)
	}
	return t.start + int64(float64(t.k)*t.interval)
}

// tick sends the open-loop messages that are due, round robin over the
// senders, skipping those that are offline, at their frame cap, or held by
// a RETRY_LATER (PROTOCOL.md 8.5: nothing new goes on that connection
// until its retry_after has passed): their turn goes to the next sender,
// and a message no sender can take waits, keeping its intended time.
func (t *traffic) tick(l *loop) {
	if !t.active || t.rate <= 0 || len(t.senders) == 0 {
		return
	}
	if t.phone {
		t.tickPhone(l)
		return
	}
	if l.now < t.blockedUntil {
		return
	}
	for sends := 0; sends < maxSendsPerWake; sends++ {
		due := t.due()
		if due > l.now || (t.deadline > 0 && due >= t.deadline) {
			return
		}
		var c *conn
		for try := 0; try < len(t.senders); try++ {
			x := t.senders[l.rr%len(t.senders)]
			l.rr++
			if x.state == stateReady && x.sending && !x.capped() && !x.sess.Held(time.Duration(l.now)) {
				c = x
				break
			}
		}
		if c == nil {
			t.blockedUntil = t.unblocked(l.now)
			return
		}
		l.recordLag(due, max(due, t.blockedUntil))
		c.send(due)
		t.k++
	}
}

// unblocked returns when a sender may next take an open-loop message, all
// being held, capped or offline at now: the earliest end of a hold or the
// next second (when the frame caps reset), and at the latest the next
// housekeeping, which notices reconnections. Loop-only.
func (t *traffic) unblocked(now int64) int64 {
	at := now + int64(housekeeping)
	sec := int64(time.Second)
	for _, c := range t.senders {
		switch {
		case c.state != stateReady || !c.sending:
		case c.sess.Held(time.Duration(now)):
			end, _ := c.sess.SendDue(time.Duration(now))
			at = min(at, int64(end))
		case c.capped():
			at = min(at, (now/sec+1)*sec)
		}
	}
	return at
}

// startPhone sets the phone regime up for the step's senders: each sends
// senderRate messages per second, for d and then at most d more to catch
// up. Loop-only.
func (t *traffic) startPhone(senderRate float64, d time.Duration, poisson bool, seed, stream uint64) {
	n := len(t.senders)
	t.phone, t.window, t.untilAccepted = true, 1, true
	t.poisson, t.next = poisson, 0
	if poisson {
		t.rng = rand.New(rand.NewPCG(seed, stream)) // each loop, in each process, draws its own
	}
	t.rate = senderRate * float64(n)
	t.interval = float64(time.Second) / t.rate
	// As long again as the step: the server may be slow for a while and
	// catch up, but a server that cannot take the rate at all must not
	// keep the step going for ever.
	t.catchUp = int64(d)
	for i, c := range t.senders {
		c.phoneIdx, c.slotsDue, c.slotsSent = i, 0, 0
		c.slotAt = c.slotAt[:0]
		// What an earlier step left unaccepted still holds the phone.
		c.inflight = c.unaccepted()
	}
}

// tickPhone passes the slots that are due, and sends each slot's message
// if its sender has nothing unaccepted. Loop-only.
func (t *traffic) tickPhone(l *loop) {
	n := int64(len(t.senders))
	for slots := 0; slots < maxSendsPerWake; slots++ {
		due := t.due()
		if due > l.now || due >= t.deadline {
			return
		}
		c := t.senders[t.k%n]
		t.k++
		l.recordLag(due, due)
		if t.poisson {
			c.slotAt = append(c.slotAt, due)
			t.next += t.rng.ExpFloat64() * t.interval
		}
		t.owed++
		c.slotsDue++
		c.sendOwed()
	}
}

// recordLag records how late the loop came to an open-loop message due at
// due that it could have sent at at (Result.GeneratorLag), for messages
// due after the warm-up. Loop-only.
func (l *loop) recordLag(due, at int64) {
	if due >= l.measureFrom {
		record(l.res.GeneratorLag, l.clock()-at)
	}
}

// phoneDone reports whether a phone step is over: its deadline passed and
// every slot before it was sent, or the catch-up time ran out too.
func (t *traffic) phoneDone(now int64) bool {
	if now < t.deadline {
		return false
	}
	return (t.owed == 0 && t.due() >= t.deadline) || now >= t.deadline+t.catchUp
}

// unsent returns the phone slots before the deadline whose message was
// never sent: owed, or not even passed (a loop far behind).
func (t *traffic) unsent() uint64 {
	n := uint64(max(t.owed, 0))
	if t.poisson {
		// The slots not drawn yet: as many as the mean gap puts there.
		return n + uint64(max(float64(t.deadline-t.due())/t.interval, 0))
	}
	for k := t.k; t.start+int64(float64(k)*t.interval) < t.deadline; k++ {
		n++
	}
	return n
}

// sendOwed sends a phone sender's oldest owed message, timed from its slot,
// if the sender has nothing unaccepted and may write. Loop-only.
func (c *conn) sendOwed() {
	l := c.l
	t := &l.traffic
	if !c.sending || c.inflight > 0 || c.slotsSent >= c.slotsDue || c.state != stateReady {
		return
	}
	if c.capped() {
		c.block()
		return
	}
	at := t.start + int64(float64(int64(c.phoneIdx)+c.slotsSent*int64(len(t.senders)))*t.interval)
	if t.poisson {
		at = c.slotAt[0]
		c.slotAt = c.slotAt[:copy(c.slotAt, c.slotAt[1:])] // usually one: no allocation per message
	}
	c.slotsSent++
	t.owed--
	c.send(at)
}

// unaccepted returns how many of c's messages are neither accepted nor
// refused for good. Loop-only.
func (c *conn) unaccepted() int {
	n := 0
	for i := range c.out {
		if m := &c.out[i]; !m.accepted && !m.settled {
			n++
		}
	}
	return n
}

// groupCreate returns the GROUP request creating a group of members.
func groupCreate(msgID uint64, members []uint64) *protocol.Group {
	return &protocol.Group{MsgID: msgID, Op: protocol.GroupCreate, Members: members}
}
