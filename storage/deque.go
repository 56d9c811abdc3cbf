package storage

// deque is a ring: the committer's held-back, unfinished and prefetched
// ops (opDeque), and the in-flight tier's items in commit order. Pushing at
// either end and taking from the front cost O(1) (amortised: the ring
// doubles when full), so a long run is never shifted or copied again.
type deque[T any] struct {
	buf  []T // len(buf) is zero or a power of two
	head int // index of the front
	n    int // values held
}

// opDeque holds ops.
type opDeque = deque[op]

func (d *deque[T]) len() int { return d.n }

func (d *deque[T]) grow() {
	if d.n < len(d.buf) {
		return
	}
	buf := make([]T, max(16, 2*len(d.buf)))
	for i := range d.n {
		buf[i] = d.buf[(d.head+i)&(len(d.buf)-1)]
	}
	d.buf, d.head = buf, 0
}

// pushBack adds o after the last value.
func (d *deque[T]) pushBack(o T) {
	d.grow()
	d.buf[(d.head+d.n)&(len(d.buf)-1)] = o
	d.n++
}

// pushFront makes o the front value.
func (d *deque[T]) pushFront(o T) {
	d.grow()
	d.head = (d.head - 1) & (len(d.buf) - 1)
	d.buf[d.head] = o
	d.n++
}

// front returns the front value without taking it; false if there is none.
func (d *deque[T]) front() (T, bool) {
	if d.n == 0 {
		var zero T
		return zero, false
	}
	return d.buf[d.head], true
}

// popFront takes the front value; false if there is none.
func (d *deque[T]) popFront() (T, bool) {
	var zero T
	if d.n == 0 {
		return zero, false
	}
	o := d.buf[d.head]
	d.buf[d.head] = zero // drop its references
	d.head = (d.head + 1) & (len(d.buf) - 1)
	d.n--
	return o, true
}

// filter drops, in place, the values keep rejects, keeping the others in
// order.
func (d *deque[T]) filter(keep func(T) bool) {
	mask, j := len(d.buf)-1, 0
	for i := range d.n {
		if o := d.buf[(d.head+i)&mask]; keep(o) {
			d.buf[(d.head+j)&mask] = o
			j++
		}
	}
	var zero T
	for i := j; i < d.n; i++ {
		d.buf[(d.head+i)&mask] = zero // drop their references
	}
	d.n = j
}
