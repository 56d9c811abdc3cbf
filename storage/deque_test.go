package storage

import "testing"

// TestOpDeque checks order across growth and wrap-around against a slice.
func TestOpDeque(t *testing.T) {
	var d opDeque
	var model []uint64
	next := uint64(1)
	for step := range 5000 {
		switch step % 7 {
		case 0, 1, 2:
			d.pushBack(op{upto: next})
			model = append(model, next)
			next++
		case 3:
			d.pushFront(op{upto: next})
			model = append([]uint64{next}, model...)
			next++
		default:
			o, ok := d.popFront()
			if ok != (len(model) > 0) {
				t.Fatalf("step %d: popFront ok=%v with %d in the model", step, ok, len(model))
			}
			if ok {
				if o.upto != model[0] {
					t.Fatalf("step %d: popped %d, want %d", step, o.upto, model[0])
				}
				model = model[1:]
			}
		}
		if d.len() != len(model) {
			t.Fatalf("step %d: len %d, want %d", step, d.len(), len(model))
		}
	}
	for len(model) > 0 {
		o, _ := d.popFront()
		if o.upto != model[0] {
			t.Fatalf("drain: popped %d, want %d", o.upto, model[0])
		}
		model = model[1:]
	}
	if _, ok := d.popFront(); ok {
		t.Fatal("popFront on an empty deque")
	}
}

// TestDequeFilter drops values in place across wrap-around and keeps the
// rest in order, their slots cleared.
func TestDequeFilter(t *testing.T) {
	var d deque[*int]
	var model []int
	for i := range 40 {
		v := i
		d.pushBack(&v)
		model = append(model, i)
	}
	for i := range 20 { // the front moves on: the ring wraps around
		d.popFront()
		model = model[1:]
		v := 100 + i
		d.pushBack(&v)
		model = append(model, v)
	}
	d.filter(func(p *int) bool { return *p%3 != 0 })
	var want []int
	for _, v := range model {
		if v%3 != 0 {
			want = append(want, v)
		}
	}
	if d.len() != len(want) {
		t.Fatalf("len %d after filter, want %d", d.len(), len(want))
	}
	held := 0
	for _, p := range d.buf {
		if p != nil {
			held++
		}
	}
	if held != len(want) {
		t.Fatalf("%d slots still hold values, want %d", held, len(want))
	}
	for i, w := range want {
		p, ok := d.popFront()
		if !ok || *p != w {
			t.Fatalf("value %d: got %v, want %d", i, p, w)
		}
	}
}
