package bench

// wake is a connection whose session has a send due at at: a RETRY_LATER's
// hold ending, or a refused message's retry_after.
type wake struct {
	c  *conn
	at int64
}

// wakeQueue holds the connections' send wake-ups, earliest first: a binary
// min-heap, since each refusal's retry_after is drawn at random by the
// server and later refusals may come due sooner. A connection is on it
// once, at conn.wakeAt; an entry whose at is no longer its wakeAt is stale
// and ignored. Loop-only; push and pop allocate only when the backing array
// grows.
type wakeQueue []wake

// push adds w.
func (q *wakeQueue) push(w wake) {
	*q = append(*q, w)
	h := *q
	for i := len(h) - 1; i > 0; {
		p := (i - 1) / 2
		if h[p].at <= h[i].at {
			break
		}
		h[p], h[i] = h[i], h[p]
		i = p
	}
}

// next returns the earliest wake time; ok is false when q is empty.
func (q wakeQueue) next() (at int64, ok bool) {
	if len(q) == 0 {
		return 0, false
	}
	return q[0].at, true
}

// pop removes and returns the earliest wake. q must not be empty.
func (q *wakeQueue) pop() wake {
	h := *q
	top := h[0]
	last := len(h) - 1
	h[0] = h[last]
	h[last] = wake{}
	h = h[:last]
	for i := 0; ; {
		small, l, r := i, 2*i+1, 2*i+2
		if l < len(h) && h[l].at < h[small].at {
			small = l
		}
		if r < len(h) && h[r].at < h[small].at {
			small = r
		}
		if small == i {
			break
		}
		h[i], h[small] = h[small], h[i]
		i = small
	}
	*q = h
	return top
}
