package protocol

import (
	"encoding/binary"
	"fmt"
)

// A record is a mailbox entry as the server stores it: the header byte of
// its frame (DELIVER, RECEIPT or GROUP_EVENT, never compressed) followed by
// the frame's payload without the leading seq. Adding the seq makes a frame;
// adding a length makes a BATCH entry. Records never travel on the wire as
// such; they let the server store an entry once and send it without parsing
// its body.

// AppendRecord appends d, without its seq, as a record.
func (d *Deliver) AppendRecord(dst []byte) []byte {
	flags, _ := d.shape()
	dst = append(dst, byte(TypeDeliver)|flags)
	return d.appendFields(dst, d.From)
}

// AppendRecord appends x, without its seq, as a record.
func (x *Receipt) AppendRecord(dst []byte) []byte {
	flags, _ := x.shape()
	dst = append(dst, byte(TypeReceipt)|flags)
	return x.appendFields(dst)
}

// AppendRecord appends g, without its seq, as a record.
func (g *GroupEvent) AppendRecord(dst []byte) []byte {
	flags, _ := g.shape()
	dst = append(dst, byte(TypeGroupEvent)|flags)
	return g.appendFields(dst)
}

// ParseRecord checks rec's header byte and returns it as a Frame whose
// payload lacks the seq. The payload aliases rec.
func ParseRecord(rec []byte) (Frame, error) {
	if len(rec) == 0 {
		return Frame{}, fmt.Errorf("%w: empty record", ErrMalformed)
	}
	f := Frame{Type: Type(rec[0] & typeMask), Flags: rec[0] &^ typeMask, Payload: rec[1:]}
	switch {
	case f.Type != TypeDeliver && f.Type != TypeReceipt && f.Type != TypeGroupEvent:
		return Frame{}, fmt.Errorf("%w: %v record", ErrMalformed, f.Type)
	case f.Flags&^allowedFlags[f.Type] != 0 || f.Has(FlagCompressed):
		return Frame{}, fmt.Errorf("%w: record flags 0x%02x", ErrMalformed, f.Flags)
	}
	return f, nil
}

// DecodeRecord fills d from a DELIVER record with the given seq. Body aliases rec.
func (d *Deliver) DecodeRecord(f Frame, seq uint64) error {
	r := reader{b: f.Payload}
	d.Seq = seq
	d.From = r.id("from")
	d.decodeFields(&r, f.Flags)
	return r.err
}

// DecodeRecord fills g from a GROUP_EVENT record with the given seq.
// Members reuses its backing array.
func (g *GroupEvent) DecodeRecord(f Frame, seq uint64) error {
	r := reader{b: f.Payload}
	g.Seq = seq
	g.decodeFields(&r, f.Flags)
	return r.err
}

// AppendRecordFrame appends the frame for record f (from ParseRecord) with
// the given seq: the record's header byte and payload with the seq put back
// in front. It copies the payload once and parses nothing.
func AppendRecordFrame(dst []byte, f Frame, seq uint64) []byte {
	dst = binary.AppendUvarint(dst, uint64(1+uvarintLen(seq)+len(f.Payload)))
	dst = append(dst, byte(f.Type)|f.Flags)
	dst = binary.AppendUvarint(dst, seq)
	return append(dst, f.Payload...)
}

// Record adds the entry for record f with the given seq, which must be
// NextSeq. DELIVER records are re-encoded to share the sender with the entry
// before; the others are copied as they are.
func (w *BatchWriter) Record(f Frame, seq uint64) error {
	if f.Type == TypeDeliver {
		var d Deliver
		if err := d.DecodeRecord(f, seq); err != nil {
			return err
		}
		w.Deliver(&d)
		return nil
	}
	w.mustBeNext(seq)
	w.buf = appendHeader(w.buf, f.Type, f.Flags, len(f.Payload))
	w.buf = append(w.buf, f.Payload...)
	w.count++
	return nil
}
