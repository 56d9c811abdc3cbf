package storage

// opDeque is a ring of ops: the committer's held-back, unfinished and
// prefetched ops. Pushing at either end and taking from the front cost
// O(1) (amortised: the ring doubles when full), so a long run of
// prefetched ops is never shifted or copied again.
type opDeque struct {
	buf  []op // len(buf) is zero or a power of two
	head int  // index of the front op
	n    int  // ops held
}

func (d *opDeque) len() int { return d.n }

func (d *opDeque) grow() {
	if d.n < len(d.buf) {
		return
	}
	buf := make([]op, max(16, 2*len(d.buf)))
	for i := range d.n {
		buf[i] = d.buf[(d.head+i)&(len(d.buf)-1)]
	}
	d.buf, d.head = buf, 0
}

// pushBack adds o after the last op.
func (d *opDeque) pushBack(o op) {
	d.grow()
	d.buf[(d.head+d.n)&(len(d.buf)-1)] = o
	d.n++
}

// pushFront makes o the front op.
func (d *opDeque) pushFront(o op) {
	d.grow()
	d.head = (d.head - 1) & (len(d.buf) - 1)
	d.buf[d.head] = o
	d.n++
}

// popFront takes the front op; false if there is none.
func (d *opDeque) popFront() (op, bool) {
	if d.n == 0 {
		return op{}, false
	}
	o := d.buf[d.head]
	d.buf[d.head] = op{} // drop its references
	d.head = (d.head + 1) & (len(d.buf) - 1)
	d.n--
	return o, true
}
