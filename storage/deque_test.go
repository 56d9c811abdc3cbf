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
