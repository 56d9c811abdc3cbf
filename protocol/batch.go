package protocol

import (
	"encoding/binary"
	"fmt"
)

// A BATCH (0x07) carries consecutive mailbox entries in one frame, so an
// offline backlog drains in few frames that compress well as a whole.
//
//	first_seq varint | entry | entry | …   (to the end of the payload)
//
// Each entry is encoded exactly as a frame (length varint, header byte,
// payload) of type DELIVER, RECEIPT or GROUP_EVENT, without the payload's
// leading seq field and never with FlagCompressed: entry i has seq
// first_seq+i. In a DELIVER entry, from = 0 means "the same sender as the
// DELIVER entry before it in this batch"; writers use it whenever the sender
// repeats, readers also accept the sender written out.

// BatchWriter builds the payload of a BATCH frame. The zero value is not
// usable; call Reset first. It is not safe for concurrent use.
type BatchWriter struct {
	buf      []byte
	first    uint64
	count    int
	lastFrom uint64
}

// Reset starts a new batch whose first entry has seq first, reusing the
// writer's buffer.
func (w *BatchWriter) Reset(first uint64) {
	w.buf = binary.AppendUvarint(w.buf[:0], first)
	w.first, w.count, w.lastFrom = first, 0, 0
}

// Len returns the payload length so far.
func (w *BatchWriter) Len() int { return len(w.buf) }

// Count returns the number of entries so far.
func (w *BatchWriter) Count() int { return w.count }

// NextSeq returns the seq the next entry must have.
func (w *BatchWriter) NextSeq() uint64 { return w.first + uint64(w.count) }

// Deliver adds d; d.Seq must be NextSeq.
func (w *BatchWriter) Deliver(d *Deliver) {
	w.mustBeNext(d.Seq)
	from := d.From
	if from == w.lastFrom {
		from = 0
	}
	flags, n := d.shape()
	n += uvarintLen(from) - uvarintLen(d.From)
	w.buf = appendHeader(w.buf, TypeDeliver, flags, n)
	w.buf = d.appendFields(w.buf, from)
	w.lastFrom = d.From
	w.count++
}

// Receipt adds x; x.Seq must be NextSeq.
func (w *BatchWriter) Receipt(x *Receipt) {
	w.mustBeNext(x.Seq)
	flags, n := x.shape()
	w.buf = appendHeader(w.buf, TypeReceipt, flags, n)
	w.buf = x.appendFields(w.buf)
	w.count++
}

// GroupEvent adds g; g.Seq must be NextSeq.
func (w *BatchWriter) GroupEvent(g *GroupEvent) {
	w.mustBeNext(g.Seq)
	flags, n := g.shape()
	w.buf = appendHeader(w.buf, TypeGroupEvent, flags, n)
	w.buf = g.appendFields(w.buf)
	w.count++
}

func (w *BatchWriter) mustBeNext(seq uint64) {
	if seq != w.NextSeq() {
		panic(fmt.Sprintf("protocol: batch entry seq %d, want %d", seq, w.NextSeq()))
	}
}

// Payload returns the BATCH payload built so far. It aliases the writer's
// buffer and is valid until the next Reset.
func (w *BatchWriter) Payload() []byte { return w.buf }

// Append appends the batch as an uncompressed BATCH frame.
func (w *BatchWriter) Append(dst []byte) []byte {
	return AppendFrame(dst, TypeBatch, 0, w.buf)
}

// BatchReader walks the entries of an uncompressed BATCH frame:
//
//	var br BatchReader
//	br.Reset(f)
//	for br.Next() {
//		switch br.Type() {
//		case TypeDeliver:
//			err = br.Deliver(&d)
//		…
//	}
//	err = br.Err()
//
// Slices it returns alias the frame.
type BatchReader struct {
	rest     []byte
	seq      uint64
	entry    Frame
	from     uint64 // the current DELIVER entry's sender, 0 resolved
	lastFrom uint64
	err      error
}

// Reset starts reading the batch in f.
func (br *BatchReader) Reset(f Frame) {
	*br = BatchReader{}
	if f.Has(FlagCompressed) {
		br.err = errCompressed
		return
	}
	r := reader{b: f.Payload}
	first := r.id("first_seq")
	if r.err == nil && !r.more() {
		r.err = fmt.Errorf("%w: empty batch", ErrMalformed)
	}
	br.rest, br.seq, br.err = r.b, first-1, r.err
}

// Next advances to the next entry and reports whether there is one. It
// resolves a DELIVER entry's sender even when the caller skips the entry
// (a redelivery, say), so from = 0 in a later entry still means the right
// sender.
func (br *BatchReader) Next() bool {
	if br.err != nil || len(br.rest) == 0 {
		return false
	}
	e, n, err := ReadFrame(br.rest, len(br.rest))
	switch {
	case err == ErrIncomplete || err == ErrFrameTooLarge:
		err = fmt.Errorf("%w: truncated batch entry", ErrMalformed)
	case err != nil:
	case e.Type != TypeDeliver && e.Type != TypeReceipt && e.Type != TypeGroupEvent:
		err = fmt.Errorf("%w: %v in a batch", ErrMalformed, e.Type)
	case e.Has(FlagCompressed):
		err = fmt.Errorf("%w: compressed batch entry", ErrMalformed)
	case br.seq+1 == 0:
		err = fmt.Errorf("%w: batch seq wraps", ErrMalformed)
	case e.Type == TypeDeliver:
		r := reader{b: e.Payload}
		from := r.uvarint()
		switch {
		case r.err != nil:
			err = r.err
		case from == 0 && br.lastFrom == 0:
			err = fmt.Errorf("%w: first sender of a batch is 0", ErrMalformed)
		case from == 0:
			from = br.lastFrom
		}
		br.from, br.lastFrom = from, from
	}
	if err != nil {
		br.err = err
		return false
	}
	br.rest, br.entry = br.rest[n:], e
	br.seq++
	return true
}

// Type returns the current entry's type.
func (br *BatchReader) Type() Type { return br.entry.Type }

// Seq returns the current entry's seq.
func (br *BatchReader) Seq() uint64 { return br.seq }

// Deliver decodes the current entry, which must be a DELIVER.
func (br *BatchReader) Deliver(d *Deliver) error {
	if err := br.mustBe(TypeDeliver); err != nil {
		return err
	}
	r := reader{b: br.entry.Payload}
	r.uvarint() // from, resolved by Next
	d.Seq, d.From = br.seq, br.from
	d.decodeFields(&r, br.entry.Flags)
	return br.fail(r.err)
}

// Receipt decodes the current entry, which must be a RECEIPT.
func (br *BatchReader) Receipt(x *Receipt) error {
	if err := br.mustBe(TypeReceipt); err != nil {
		return err
	}
	r := reader{b: br.entry.Payload}
	x.Seq = br.seq
	x.decodeFields(&r, br.entry.Flags)
	return br.fail(r.end())
}

// GroupEvent decodes the current entry, which must be a GROUP_EVENT.
func (br *BatchReader) GroupEvent(g *GroupEvent) error {
	if err := br.mustBe(TypeGroupEvent); err != nil {
		return err
	}
	r := reader{b: br.entry.Payload}
	g.Seq = br.seq
	g.decodeFields(&r, br.entry.Flags)
	return br.fail(r.err)
}

// mustBe reports a caller's mistake: decoding the entry as the wrong type.
func (br *BatchReader) mustBe(t Type) error {
	if br.entry.Type != t {
		return fmt.Errorf("protocol: batch entry is %v, not %v", br.entry.Type, t)
	}
	return nil
}

func (br *BatchReader) fail(err error) error {
	if err != nil && br.err == nil {
		br.err = err
	}
	return err
}

// Err returns the first error met while reading the batch.
func (br *BatchReader) Err() error { return br.err }
