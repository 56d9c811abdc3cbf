package gateway

import (
	"slices"
	"testing"
)

// TestWheel: each connection fires once, at its due second, also when that
// is several laps away; removed ones never fire; a due second in the past
// fires at the next advance.
func TestWheel(t *testing.T) {
	var w wheel
	w.now = 10
	dues := map[*conn]uint32{}
	var cs []*conn
	for _, due := range []uint32{11, 12, 12, 10 + wheelSlots, 10 + 3*wheelSlots + 5, 5} {
		c := &conn{}
		w.add(c, due)
		cs = append(cs, c)
		dues[c] = max(due, 11)
	}
	gone := &conn{}
	w.add(gone, 13)
	w.remove(gone)
	if w.count != len(cs) {
		t.Fatalf("count %d, want %d", w.count, len(cs))
	}
	fired := map[*conn]uint32{}
	w.advance(10+4*wheelSlots, func(c *conn) {
		if _, ok := fired[c]; ok {
			t.Fatalf("fired twice")
		}
		fired[c] = w.now
	})
	if _, ok := fired[gone]; ok {
		t.Fatal("a removed connection fired")
	}
	for i, c := range cs {
		if fired[c] != dues[c] {
			t.Errorf("connection %d (due %d) fired at %d", i, dues[c], fired[c])
		}
	}
	if w.count != 0 {
		t.Fatalf("count %d after all fired", w.count)
	}
	// each visits exactly what is on the wheel.
	a, b := &conn{}, &conn{}
	w.add(a, w.now+1)
	w.add(b, w.now+100)
	var seen []*conn
	w.each(func(c *conn) { seen = append(seen, c) })
	if len(seen) != 2 || !slices.Contains(seen, a) || !slices.Contains(seen, b) {
		t.Fatalf("each saw %d connections", len(seen))
	}
}
