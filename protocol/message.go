package protocol

import "encoding/binary"

// Send carries a message from its sender (SEND, 0x03).
//
//	msg_id varint | to varint | body (the rest)
//
// FlagA: To is a group. FlagB: a retry. The sender is whoever logged in on
// the connection; MsgID, chosen by the sender, makes a retry recognisable.
//
// The server looks up (sender, MsgID) among the messages it already took only
// when Retry is set, so a first transmission costs no lookup. A sender sets
// Retry on every resend of an id (after a dropped connection, a GOAWAY or a
// REFUSE) and leaves it off the first time; a resend without it may be stored
// and delivered twice.
type Send struct {
	MsgID uint64
	To    uint64
	Group bool   // To is a group; flag A
	Retry bool   // the sender may have sent this msg_id before; flag B
	Body  []byte // opaque, end-to-end encrypted; aliases the frame
}

// Append appends s as a frame.
func (s *Send) Append(dst []byte) []byte {
	var flags byte
	if s.Group {
		flags |= FlagA
	}
	if s.Retry {
		flags |= FlagB
	}
	n := uvarintLen(s.MsgID) + uvarintLen(s.To) + len(s.Body)
	dst = appendHeader(dst, TypeSend, flags, n)
	dst = binary.AppendUvarint(dst, s.MsgID)
	dst = binary.AppendUvarint(dst, s.To)
	return append(dst, s.Body...)
}

// Decode fills s from f, which must be an uncompressed SEND frame. Body
// aliases f.Payload.
func (s *Send) Decode(f Frame) error {
	if f.Has(FlagCompressed) {
		return errCompressed
	}
	r := reader{b: f.Payload}
	s.MsgID = r.id("msg_id")
	s.To = r.id("to")
	s.Group = f.Has(FlagA)
	s.Retry = f.Has(FlagB)
	s.Body = r.rest()
	return r.err
}

// Accept tells a sender its request is durable (ACCEPT, 0x04).
//
//	msg_id varint | [more varint, if FlagA] | [ref varint, if bytes remain]
//
// It covers ids MsgID through MsgID+More: the server coalesces acceptances of
// consecutive ids. Ref, when not zero, carries the id of a group created by a
// GROUP request.
type Accept struct {
	MsgID uint64
	More  uint64
	Ref   uint64
}

// Append appends a as a frame.
func (a *Accept) Append(dst []byte) []byte {
	var flags byte
	n := uvarintLen(a.MsgID)
	if a.More > 0 {
		flags = FlagA
		n += uvarintLen(a.More)
	}
	if a.Ref > 0 {
		n += uvarintLen(a.Ref)
	}
	dst = appendHeader(dst, TypeAccept, flags, n)
	dst = binary.AppendUvarint(dst, a.MsgID)
	if a.More > 0 {
		dst = binary.AppendUvarint(dst, a.More)
	}
	if a.Ref > 0 {
		dst = binary.AppendUvarint(dst, a.Ref)
	}
	return dst
}

// Decode fills a from f, which must be an ACCEPT frame.
func (a *Accept) Decode(f Frame) error {
	r := reader{b: f.Payload}
	a.MsgID = r.id("msg_id")
	a.More, a.Ref = 0, 0
	if f.Has(FlagA) {
		a.More = r.id("more")
	}
	if r.more() {
		a.Ref = r.id("ref")
	}
	return r.end()
}

// Refuse turns down one request; the connection stays open (REFUSE, 0x05).
//
//	msg_id varint | code varint | retry_after varint | reason (UTF-8, the rest, at most MaxReason bytes)
//
// The reason is optional, exactly as in ERROR: an empty one is no bytes.
type Refuse struct {
	MsgID      uint64
	Code       Code
	RetryAfter uint32 // milliseconds to wait before retrying; 0: do not retry unchanged
	Reason     string // the check that failed, for people and logs; programs act on Code
}

// Append appends x as a frame; the reason is made valid UTF-8 and cut to
// MaxReason bytes as for ERROR, so the frame always decodes.
func (x *Refuse) Append(dst []byte) []byte {
	reason := sendableReason(x.Reason)
	n := uvarintLen(x.MsgID) + uvarintLen(uint64(x.Code)) + uvarintLen(uint64(x.RetryAfter)) + len(reason)
	dst = appendHeader(dst, TypeRefuse, 0, n)
	dst = binary.AppendUvarint(dst, x.MsgID)
	dst = binary.AppendUvarint(dst, uint64(x.Code))
	dst = binary.AppendUvarint(dst, uint64(x.RetryAfter))
	return append(dst, reason...)
}

// Decode fills x from f, which must be a REFUSE frame.
func (x *Refuse) Decode(f Frame) error {
	r := reader{b: f.Payload}
	x.MsgID = r.id("msg_id")
	x.Code = r.code()
	if x.Code == 0 && r.err == nil {
		r.err = wrapMalformed("zero code")
	}
	x.RetryAfter = r.u32()
	x.Reason = r.reason()
	return r.err
}

// Deliver is a message from the recipient's mailbox (DELIVER, 0x06).
//
//	seq varint | from varint | msg_id varint | [group varint, if FlagA] |
//	[time varint, if FlagB] | body (the rest)
//
// Time is left out of live deliveries, made within a second of the server
// accepting the message: the client stamps those with its estimate of the
// server clock (WELCOME.Time). Entries drained from storage carry it.
type Deliver struct {
	Seq   uint64 // the recipient's sequence number
	From  uint64 // the sender
	MsgID uint64 // the sender's id for the message
	Group uint64 // the group it was sent to; 0: a 1:1 message
	Time  uint32 // server time of acceptance (Stamp); 0: absent
	Body  []byte // aliases the frame
}

// Append appends d as a frame.
func (d *Deliver) Append(dst []byte) []byte {
	flags, n := d.shape()
	dst = appendHeader(dst, TypeDeliver, flags, uvarintLen(d.Seq)+n)
	dst = binary.AppendUvarint(dst, d.Seq)
	return d.appendFields(dst, d.From)
}

// shape returns the flags and the payload length without the seq.
func (d *Deliver) shape() (flags byte, n int) {
	n = uvarintLen(d.From) + uvarintLen(d.MsgID) + len(d.Body)
	if d.Group != 0 {
		flags |= FlagA
		n += uvarintLen(d.Group)
	}
	if d.Time != 0 {
		flags |= FlagB
		n += uvarintLen(uint64(d.Time))
	}
	return flags, n
}

// appendFields appends every field after the seq, with from as given (a
// BATCH entry writes 0 for "same sender as the entry before").
func (d *Deliver) appendFields(dst []byte, from uint64) []byte {
	dst = binary.AppendUvarint(dst, from)
	dst = binary.AppendUvarint(dst, d.MsgID)
	if d.Group != 0 {
		dst = binary.AppendUvarint(dst, d.Group)
	}
	if d.Time != 0 {
		dst = binary.AppendUvarint(dst, uint64(d.Time))
	}
	return append(dst, d.Body...)
}

// Decode fills d from f, which must be an uncompressed DELIVER frame. Body
// aliases f.Payload.
func (d *Deliver) Decode(f Frame) error {
	if f.Has(FlagCompressed) {
		return errCompressed
	}
	r := reader{b: f.Payload}
	d.Seq = r.id("seq")
	d.From = r.id("from")
	d.decodeFields(&r, f.Flags)
	return r.err
}

// decodeFields reads every field after from.
func (d *Deliver) decodeFields(r *reader, flags byte) {
	d.MsgID = r.id("msg_id")
	d.Group, d.Time = 0, 0
	if flags&FlagA != 0 {
		d.Group = r.id("group")
	}
	if flags&FlagB != 0 {
		d.Time = r.id32("time")
	}
	d.Body = r.rest()
}

// Ack acknowledges every mailbox entry up to Seq (ACK, 0x08).
//
//	seq varint
type Ack struct {
	Seq uint64
}

// Append appends a as a frame.
func (a *Ack) Append(dst []byte) []byte {
	dst = appendHeader(dst, TypeAck, 0, uvarintLen(a.Seq))
	return binary.AppendUvarint(dst, a.Seq)
}

// Decode fills a from f, which must be an ACK frame.
func (a *Ack) Decode(f Frame) error {
	r := reader{b: f.Payload}
	a.Seq = r.id("seq")
	return r.end()
}

// Receipt tells a sender what became of its messages: delivered, read, or
// expired (RECEIPT, 0x09). It is a mailbox entry of the sender's and is
// acknowledged like a message.
//
//	seq varint | msg_id varint | [more varint, if FlagB] | [by varint, if bytes remain] |
//	[kind varint, if bytes remain after by]
//
// FlagA: read. Kind 1 (ReceiptExpired): expired, never with FlagA. Neither:
// delivered. It covers the sender's ids MsgID through MsgID+More. By names
// the reader of a read receipt, the member of a delivered receipt for
// group messages, and the recipient of an expired one (which always names
// it, so that its kind can follow).
type Receipt struct {
	Seq   uint64
	MsgID uint64
	More  uint64
	Read  bool
	By    uint64 // 0: a delivered 1:1 receipt (the recipient is implied)
	// Expired says the messages were deleted unfetched once the server's
	// message TTL passed: they are gone. By must name the recipient; an
	// expired receipt with By 0 encodes to a frame Decode refuses.
	Expired bool
}

// ReceiptExpired is the kind field of an expired RECEIPT.
const ReceiptExpired = 1

// Append appends x as a frame.
func (x *Receipt) Append(dst []byte) []byte {
	flags, n := x.shape()
	dst = appendHeader(dst, TypeReceipt, flags, uvarintLen(x.Seq)+n)
	dst = binary.AppendUvarint(dst, x.Seq)
	return x.appendFields(dst)
}

func (x *Receipt) shape() (flags byte, n int) {
	n = uvarintLen(x.MsgID)
	if x.Read {
		flags |= FlagA
	}
	if x.More > 0 {
		flags |= FlagB
		n += uvarintLen(x.More)
	}
	if x.By > 0 || x.Expired {
		n += uvarintLen(x.By)
	}
	if x.Expired {
		n += uvarintLen(ReceiptExpired)
	}
	return flags, n
}

func (x *Receipt) appendFields(dst []byte) []byte {
	dst = binary.AppendUvarint(dst, x.MsgID)
	if x.More > 0 {
		dst = binary.AppendUvarint(dst, x.More)
	}
	if x.By > 0 || x.Expired {
		dst = binary.AppendUvarint(dst, x.By)
	}
	if x.Expired {
		dst = binary.AppendUvarint(dst, ReceiptExpired)
	}
	return dst
}

// Decode fills x from f, which must be a RECEIPT frame.
func (x *Receipt) Decode(f Frame) error {
	r := reader{b: f.Payload}
	x.Seq = r.id("seq")
	x.decodeFields(&r, f.Flags)
	return r.end()
}

var (
	errReceiptKind        = wrapMalformed("unknown RECEIPT kind")
	errReceiptReadExpired = wrapMalformed("RECEIPT both read and expired")
)

func (x *Receipt) decodeFields(r *reader, flags byte) {
	x.MsgID = r.id("msg_id")
	x.Read = flags&FlagA != 0
	x.More, x.By, x.Expired = 0, 0, false
	if flags&FlagB != 0 {
		x.More = r.id("more")
	}
	if r.more() {
		x.By = r.id("by")
	}
	if r.more() {
		switch r.uvarint() {
		case ReceiptExpired:
			x.Expired = true
		default:
			if r.err == nil {
				r.err = errReceiptKind
			}
		}
		if x.Read && r.err == nil {
			r.err = errReceiptReadExpired
		}
	}
}

// MaxReadIDs is the most msg ids one READ covers (more + 1), fixed by
// protocol version 1 (PROTOCOL.md, READ): a READ over it is a protocol
// error.
const MaxReadIDs = 1024

// Read tells the server its user has read messages of one sender (READ, 0x0A).
// The server stores a read RECEIPT in the sender's mailbox.
//
//	to varint | msg_id varint | [more varint, if FlagB]
//
// FlagA: the messages were sent to a group (the receipt then names the reader).
// One READ covers at most MaxReadIDs ids (more below it).
type Read struct {
	To    uint64 // the sender of the messages read
	MsgID uint64
	More  uint64
	Group bool
}

// Append appends x as a frame.
func (x *Read) Append(dst []byte) []byte {
	var flags byte
	n := uvarintLen(x.To) + uvarintLen(x.MsgID)
	if x.Group {
		flags |= FlagA
	}
	if x.More > 0 {
		flags |= FlagB
		n += uvarintLen(x.More)
	}
	dst = appendHeader(dst, TypeRead, flags, n)
	dst = binary.AppendUvarint(dst, x.To)
	dst = binary.AppendUvarint(dst, x.MsgID)
	if x.More > 0 {
		dst = binary.AppendUvarint(dst, x.More)
	}
	return dst
}

// Decode fills x from f, which must be a READ frame.
func (x *Read) Decode(f Frame) error {
	r := reader{b: f.Payload}
	x.To = r.id("to")
	x.MsgID = r.id("msg_id")
	x.Group = f.Has(FlagA)
	x.More = 0
	if f.Has(FlagB) {
		x.More = r.id("more")
	}
	return r.end()
}
