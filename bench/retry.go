package bench

// retry is a refused message to send again at due.
type retry struct {
	c   *conn
	id  uint64
	due int64
}

// retryQueue holds refused messages by due time, earliest first: a binary
// min-heap, since each refusal's retry_after is drawn at random by the
// server and later refusals may come due sooner. Loop-only; push and pop
// allocate only when the backing array grows.
type retryQueue []retry

// push adds r.
func (q *retryQueue) push(r retry) {
	*q = append(*q, r)
	h := *q
	for i := len(h) - 1; i > 0; {
		p := (i - 1) / 2
		if h[p].due <= h[i].due {
			break
		}
		h[p], h[i] = h[i], h[p]
		i = p
	}
}

// next returns the earliest due time; ok is false when q is empty.
func (q retryQueue) next() (due int64, ok bool) {
	if len(q) == 0 {
		return 0, false
	}
	return q[0].due, true
}

// pop removes and returns the earliest retry. q must not be empty.
func (q *retryQueue) pop() retry {
	h := *q
	top := h[0]
	last := len(h) - 1
	h[0] = h[last]
	h[last] = retry{}
	h = h[:last]
	for i := 0; ; {
		small, l, r := i, 2*i+1, 2*i+2
		if l < len(h) && h[l].due < h[small].due {
			small = l
		}
		if r < len(h) && h[r].due < h[small].due {
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
