package protocol

import (
	"encoding/binary"
	"time"
)

// Epoch is the zero of frame timestamps: 2025-01-01T00:00:00Z. Timestamps are
// whole seconds since Epoch, which keeps them in four varint bytes until 2033.
var Epoch = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

// Stamp returns t as a frame timestamp: seconds since Epoch, at least 1 (zero
// means "no timestamp" in frames whose time is optional).
func Stamp(t time.Time) uint32 {
	s := t.Unix() - Epoch.Unix()
	if s < 1 {
		return 1
	}
	return uint32(s)
}

// StampTime returns the time a frame timestamp stands for.
func StampTime(s uint32) time.Time { return Epoch.Add(time.Duration(s) * time.Second) }

// Live reports whether a DELIVER or GROUP_EVENT stamped s, sent at now,
// goes without its time: when now is at most a second past the stamp,
// whether the entry is sent live or drained from storage. Stamps are whole
// seconds, so that is one to two seconds after acceptance; the client then
// stamps the entry with its estimate of the server clock (WELCOME.Time).
func Live(s uint32, now time.Time) bool { return now.Sub(StampTime(s)) <= time.Second }

// Login is the first frame a client sends after the preface (LOGIN, 0x01).
//
//	token_len varint | token | ping varint | dict varint | ack varint
//
// Ack is a cumulative acknowledgement made at login: the client already has
// every mailbox entry up to it, so the server deletes them and resumes after.
type Login struct {
	Token []byte // opaque to the protocol, at most MaxToken bytes; aliases the frame
	Ping  uint32 // requested ping interval in seconds; 0 asks for the server's default
	Dict  uint32 // compression dictionary the client holds; 0: no compression
	Ack   uint64 // every entry up to this seq is received; 0: none
}

// Append appends l as a frame.
func (l *Login) Append(dst []byte) []byte {
	n := uvarintLen(uint64(len(l.Token))) + len(l.Token) + uvarintLen(uint64(l.Ping)) +
		uvarintLen(uint64(l.Dict)) + uvarintLen(l.Ack)
	dst = appendHeader(dst, TypeLogin, 0, n)
	dst = binary.AppendUvarint(dst, uint64(len(l.Token)))
	dst = append(dst, l.Token...)
	dst = binary.AppendUvarint(dst, uint64(l.Ping))
	dst = binary.AppendUvarint(dst, uint64(l.Dict))
	return binary.AppendUvarint(dst, l.Ack)
}

// Decode fills l from f, which must be a LOGIN frame.
func (l *Login) Decode(f Frame) error {
	r := reader{b: f.Payload}
	l.Token = r.bytes(MaxToken)
	l.Ping = r.u32()
	l.Dict = r.u32()
	l.Ack = r.uvarint()
	return r.end()
}

// Welcome answers a valid LOGIN (WELCOME, 0x02).
//
//	version varint | user varint | time varint | ping varint | dict varint |
//	max_frame varint | window varint | last varint
type Welcome struct {
	Version  uint32 // protocol version the server chose
	User     uint64 // the authenticated user id
	Time     uint64 // server clock, milliseconds since the Unix epoch
	Ping     uint32 // ping interval granted, seconds; silence for 1.5× this closes
	Dict     uint32 // dictionary for compressed frames; 0: none
	MaxFrame uint32 // largest frame the server accepts from this client
	Window   uint32 // most unacknowledged entries the server sends before it waits for an ACK
	Last     uint64 // the mailbox's newest seq at login: entries after the LOGIN ack up to it are waiting
}

// Append appends w as a frame.
func (w *Welcome) Append(dst []byte) []byte {
	n := uvarintLen(uint64(w.Version)) + uvarintLen(w.User) + uvarintLen(w.Time) +
		uvarintLen(uint64(w.Ping)) + uvarintLen(uint64(w.Dict)) + uvarintLen(uint64(w.MaxFrame)) +
		uvarintLen(uint64(w.Window)) + uvarintLen(w.Last)
	dst = appendHeader(dst, TypeWelcome, 0, n)
	dst = binary.AppendUvarint(dst, uint64(w.Version))
	dst = binary.AppendUvarint(dst, w.User)
	dst = binary.AppendUvarint(dst, w.Time)
	dst = binary.AppendUvarint(dst, uint64(w.Ping))
	dst = binary.AppendUvarint(dst, uint64(w.Dict))
	dst = binary.AppendUvarint(dst, uint64(w.MaxFrame))
	dst = binary.AppendUvarint(dst, uint64(w.Window))
	return binary.AppendUvarint(dst, w.Last)
}

// Decode fills w from f, which must be a WELCOME frame.
func (w *Welcome) Decode(f Frame) error {
	r := reader{b: f.Payload}
	w.Version = r.u32()
	w.User = r.id("user")
	w.Time = r.uvarint()
	w.Ping = r.u32()
	w.Dict = r.u32()
	w.MaxFrame = r.u32()
	w.Window = r.u32()
	w.Last = r.uvarint()
	return r.end()
}
