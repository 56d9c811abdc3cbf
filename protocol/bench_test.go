package protocol

import "testing"

// Benchmarks of the hot paths: every inbound frame is split by ReadFrame,
// every message is decoded once as a SEND and encoded once as a DELIVER (or
// a BATCH entry). Bodies are 100 bytes, ids seven digits, as in the vectors.
//
//	go test ./protocol -run '^$' -bench . -benchmem

func benchSend() Send {
	return Send{MsgID: 1234, To: bob, Body: opaque("body", 100)}
}

func benchDeliver(seq uint64) Deliver {
	return Deliver{Seq: seq, From: alice, MsgID: 1234, Body: opaque("body", 100)}
}

func BenchmarkReadFrame(b *testing.B) {
	s := benchSend()
	frame := s.Append(nil)
	b.ReportAllocs()
	b.SetBytes(int64(len(frame)))
	for b.Loop() {
		if _, _, err := ReadFrame(frame, MaxFrame); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSendDecode(b *testing.B) {
	s := benchSend()
	frame := s.Append(nil)
	var got Send
	b.ReportAllocs()
	b.SetBytes(int64(len(frame)))
	for b.Loop() {
		f, _, err := ReadFrame(frame, MaxFrame)
		if err != nil {
			b.Fatal(err)
		}
		if err := got.Decode(f); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSendAppend(b *testing.B) {
	s := benchSend()
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	b.SetBytes(int64(len(s.Append(nil))))
	for b.Loop() {
		buf = s.Append(buf[:0])
	}
}

func BenchmarkDeliverDecode(b *testing.B) {
	d := benchDeliver(4321)
	frame := d.Append(nil)
	var got Deliver
	b.ReportAllocs()
	b.SetBytes(int64(len(frame)))
	for b.Loop() {
		f, _, err := ReadFrame(frame, MaxServerFrame)
		if err != nil {
			b.Fatal(err)
		}
		if err := got.Decode(f); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDeliverAppend(b *testing.B) {
	d := benchDeliver(4321)
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	b.SetBytes(int64(len(d.Append(nil))))
	for b.Loop() {
		buf = d.Append(buf[:0])
	}
}

// batchOf50 returns 50 DELIVERs from five senders in runs of ten, the shape
// of an offline backlog drained at login.
func batchOf50() []Deliver {
	ds := make([]Deliver, 50)
	for i := range ds {
		ds[i] = benchDeliver(4321 + uint64(i))
		ds[i].From = alice + uint64(i/10)
		ds[i].MsgID = 1000 + uint64(i)
		ds[i].Time = vectorStamp
	}
	return ds
}

func BenchmarkBatchWriter50(b *testing.B) {
	ds := batchOf50()
	var w BatchWriter
	buf := make([]byte, 0, 8<<10)
	w.Reset(ds[0].Seq)
	for i := range ds {
		w.Deliver(&ds[i])
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(w.Append(nil))))
	for b.Loop() {
		w.Reset(ds[0].Seq)
		for i := range ds {
			w.Deliver(&ds[i])
		}
		buf = w.Append(buf[:0])
	}
	b.ReportMetric(float64(len(buf)-50*100)/50, "overhead-B/msg")
}

func BenchmarkBatchReader50(b *testing.B) {
	ds := batchOf50()
	var w BatchWriter
	w.Reset(ds[0].Seq)
	for i := range ds {
		w.Deliver(&ds[i])
	}
	frame := w.Append(nil)
	var (
		br BatchReader
		d  Deliver
	)
	b.ReportAllocs()
	b.SetBytes(int64(len(frame)))
	for b.Loop() {
		f, _, err := ReadFrame(frame, MaxServerFrame)
		if err != nil {
			b.Fatal(err)
		}
		br.Reset(f)
		n := 0
		for br.Next() {
			if err := br.Deliver(&d); err != nil {
				b.Fatal(err)
			}
			n++
		}
		if br.Err() != nil || n != 50 {
			b.Fatalf("%d entries, %v", n, br.Err())
		}
	}
}
