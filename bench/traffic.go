package bench

import "switchboard/protocol"

// traffic is a loop's share of a traffic step. In open loop (rate > 0) the
// k-th message of the loop is due at start + k×interval, whatever happened
// to the ones before it, and its latency is measured from that intended
// time: a stalled server is charged for every message it delayed, not only
// for the first (the coordinated-omission correction). In closed loop each
// sender keeps window messages in flight until they are delivered.
type traffic struct {
	active   bool
	rate     float64 // messages per second of this loop; 0: closed loop
	interval float64 // ns between messages
	window   int
	// untilAccepted: a message leaves the window when accepted, not when
	// delivered (to fill the mailboxes of absent receivers).
	untilAccepted bool
	count         int   // messages per sender; 0: until deadline
	start         int64 // ns
	deadline      int64 // ns; 0: none
	k             int64 // messages of the schedule sent
	senders       []*conn
}

// due returns when the next open-loop message is due.
func (t *traffic) due() int64 { return t.start + int64(float64(t.k)*t.interval) }

// tick sends the open-loop messages that are due, round robin over the
// senders, skipping those that are offline or at their frame cap: their
// turn goes to the next sender, and a message no sender can take waits,
// keeping its intended time.
func (t *traffic) tick(l *loop) {
	if !t.active || t.rate <= 0 || len(t.senders) == 0 {
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
			if x.state == stateReady && x.sending && !x.capped() {
				c = x
				break
			}
		}
		if c == nil {
			return
		}
		c.send(due)
		t.k++
	}
}

// groupCreate returns the GROUP request creating a group of members.
func groupCreate(msgID uint64, members []uint64) *protocol.Group {
	return &protocol.Group{MsgID: msgID, Op: protocol.GroupCreate, Members: members}
}
