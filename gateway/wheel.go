package gateway

// wheelSlots is the number of one-second slots of a loop's timing wheel.
// Deadlines further out wait in their slot for whole laps; 64 keeps a lap
// short enough that a long ping interval costs a few cheap re-checks.
const wheelSlots = 64

// wheel is a loop's timing wheel: one intrusive list of connections per
// second. A connection sits in the slot of its next check; traffic does not
// move it (it only stamps lastRecv), so the wheel costs nothing per frame.
// Owned by the event loop.
type wheel struct {
	slots [wheelSlots]*conn
	now   uint32 // seconds since the server started, as of the last tick
	count int
}

// add schedules c to be checked at second due (at least the next tick).
func (w *wheel) add(c *conn, due uint32) {
	if due <= w.now {
		due = w.now + 1
	}
	c.due = due
	i := due % wheelSlots
	c.prev, c.next = nil, w.slots[i]
	if c.next != nil {
		c.next.prev = c
	}
	w.slots[i] = c
	c.setFlag(inWheel, true)
	w.count++
}

// remove takes c off the wheel.
func (w *wheel) remove(c *conn) {
	if !c.has(inWheel) {
		return
	}
	if c.prev != nil {
		c.prev.next = c.next
	} else {
		w.slots[c.due%wheelSlots] = c.next
	}
	if c.next != nil {
		c.next.prev = c.prev
	}
	c.prev, c.next = nil, nil
	c.setFlag(inWheel, false)
	w.count--
}

// advance moves the wheel to second now, calling fire for each connection
// whose check is due; fire reschedules or closes it.
func (w *wheel) advance(now uint32, fire func(*conn)) {
	for w.now < now {
		w.now++
		i := w.now % wheelSlots
		head := w.slots[i]
		w.slots[i] = nil
		for c := head; c != nil; {
			next := c.next
			c.prev, c.next = nil, nil
			c.setFlag(inWheel, false)
			w.count--
			if c.due > w.now {
				w.add(c, c.due) // a later lap
			} else {
				fire(c)
			}
			c = next
		}
	}
}

// each calls fn for every connection on the wheel.
func (w *wheel) each(fn func(*conn)) {
	for _, head := range w.slots {
		for c := head; c != nil; {
			next := c.next
			fn(c)
			c = next
		}
	}
}
