package protocol

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"
)

// Fuzz targets for every decoder. Seeds come from testdata/vectors.json, so
// `go test` runs them all; `make fuzz` explores further. Each target checks
// that the decoder does not panic, that its errors map to the code a peer is
// told, and that what decodes re-encodes to the same bytes (every encoding is
// canonical but a BATCH's, whose DELIVER entries may repeat a sender
// explicitly; there decode(encode(x)) == x is checked instead).

// seedFrames returns the whole-frame inputs of vectors.json, valid and not.
func seedFrames(f *testing.F) [][]byte {
	file := loadVectors(f)
	var out [][]byte
	for _, v := range file.Frames {
		if v.Type != "PREFACE" {
			out = append(out, mustHex(f, v.Hex))
		}
	}
	for _, bc := range file.Invalid {
		if bc.Input == "frame" {
			out = append(out, mustHex(f, bc.Hex))
		}
	}
	return out
}

func mustHex(tb testing.TB, s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// FuzzReadFrame checks ReadFrame against its promises: no panic, an
// accepted frame re-encodes to its bytes, every shorter prefix is
// ErrIncomplete, and every error maps to a code.
func FuzzReadFrame(f *testing.F) {
	for _, b := range seedFrames(f) {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		fr, n, err := ReadFrame(data, MaxFrame)
		if err != nil {
			if n != 0 {
				t.Fatalf("error %v with n = %d", err, n)
			}
			if name := errName(err); name != "INCOMPLETE" && name != "PROTOCOL" && name != "FRAME_TOO_LARGE" && name != "UNKNOWN_TYPE" {
				t.Fatalf("error %v maps to %s", err, name)
			}
			return
		}
		if n > len(data) || n-FrameLen(len(fr.Payload)) != 0 || n > MaxFrame+MaxFrameHeader {
			t.Fatalf("n = %d for a payload of %d", n, len(fr.Payload))
		}
		if again := AppendFrame(nil, fr.Type, fr.Flags, fr.Payload); !bytes.Equal(again, data[:n]) {
			t.Fatalf("re-encoded %x, read %x", again, data[:n])
		}
		for i := range n {
			if _, _, err := ReadFrame(data[:i], MaxFrame); err != ErrIncomplete {
				t.Fatalf("prefix of %d bytes: %v, want ErrIncomplete", i, err)
			}
		}
	})
}

// FuzzSplit is the NATS parser's test: the same input, fed whole or cut in
// two at any point, yields the same frames and the same final error.
func FuzzSplit(f *testing.F) {
	stream, _ := streamOf()
	f.Add(stream, uint16(7))
	for _, b := range seedFrames(f) {
		f.Add(b, uint16(len(b)/2))
	}
	f.Fuzz(func(t *testing.T, data []byte, cut uint16) {
		at := int(cut) % (len(data) + 1)
		whole, errWhole := readStream([][]byte{data}, MaxFrame)
		split, errSplit := readStream([][]byte{data[:at], data[at:]}, MaxFrame)
		if fmt.Sprint(whole) != fmt.Sprint(split) || errName(errWhole) != errName(errSplit) {
			t.Fatalf("cut at %d: %d frames, %v; whole: %d frames, %v", at, len(split), errSplit, len(whole), errWhole)
		}
	})
}

func FuzzReadPreface(f *testing.F) {
	file := loadVectors(f)
	for _, v := range file.Frames {
		if v.Type == "PREFACE" {
			f.Add(mustHex(f, v.Hex))
		}
	}
	for _, bc := range file.Invalid {
		if bc.Input == "preface" {
			f.Add(mustHex(f, bc.Hex))
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		ver, tr, err := ReadPreface(data)
		if err != nil {
			if ver != 0 || tr != 0 {
				t.Fatalf("error %v with version %d, transport %d", err, ver, tr)
			}
			if errors.Is(err, ErrIncomplete) && len(data) >= PrefaceLen {
				t.Fatalf("%x: incomplete with %d bytes", data, len(data))
			}
			return
		}
		if again := AppendPreface(nil, ver, tr); !bytes.Equal(again, data[:PrefaceLen]) || ver == 0 {
			t.Fatalf("%x re-encodes as %x", data[:PrefaceLen], again)
		}
	})
}

// fuzzType fuzzes the Decode of one frame type: the fuzzer picks the header
// flags (masked to those the type allows, as ReadFrame would) and the payload.
func fuzzType(f *testing.F, typ Type) {
	for _, b := range seedFrames(f) {
		if fr, _, err := ReadFrame(b, MaxFrame); err == nil && fr.Type == typ {
			f.Add(fr.Flags, fr.Payload)
		}
	}
	f.Add(byte(0), []byte{})
	f.Fuzz(func(t *testing.T, flags byte, payload []byte) {
		fr := Frame{Type: typ, Flags: flags & allowedFlags[typ], Payload: payload}
		v := newValue(typ)
		if err := v.Decode(fr); err != nil {
			if name := errName(err); name != "PROTOCOL" && !(typ == TypeBatch && name == "UNKNOWN_TYPE") {
				t.Fatalf("error %v maps to %s", err, name)
			}
			return
		}
		if fr.Has(FlagCompressed) {
			t.Fatal("a compressed frame decoded without being inflated")
		}
		enc := v.Append(nil)
		if typ == TypeBatch {
			// Canonical up to the sender shorthand: decode(encode(x)) == x,
			// and the writer never spends more bytes than the input did.
			again, err := decodeFrame(enc, len(enc))
			if err != nil || !sameFields(again, v) {
				t.Fatalf("batch round trip: %v\n got %+v\nwant %+v", err, again, v)
			}
			if len(enc) > FrameLen(len(payload)) {
				t.Fatalf("re-encoded batch is %d bytes, input %d", len(enc), FrameLen(len(payload)))
			}
			return
		}
		if want := AppendFrame(nil, fr.Type, fr.Flags, fr.Payload); !bytes.Equal(enc, want) {
			t.Fatalf("decoded %+v re-encodes as\n%x, read\n%x", v, enc, want)
		}
	})
}

func FuzzLogin(f *testing.F)      { fuzzType(f, TypeLogin) }
func FuzzWelcome(f *testing.F)    { fuzzType(f, TypeWelcome) }
func FuzzSend(f *testing.F)       { fuzzType(f, TypeSend) }
func FuzzAccept(f *testing.F)     { fuzzType(f, TypeAccept) }
func FuzzRefuse(f *testing.F)     { fuzzType(f, TypeRefuse) }
func FuzzDeliver(f *testing.F)    { fuzzType(f, TypeDeliver) }
func FuzzBatch(f *testing.F)      { fuzzType(f, TypeBatch) }
func FuzzAck(f *testing.F)        { fuzzType(f, TypeAck) }
func FuzzReceipt(f *testing.F)    { fuzzType(f, TypeReceipt) }
func FuzzRead(f *testing.F)       { fuzzType(f, TypeRead) }
func FuzzSignal(f *testing.F)     { fuzzType(f, TypeSignal) }
func FuzzGroup(f *testing.F)      { fuzzType(f, TypeGroup) }
func FuzzGroupEvent(f *testing.F) { fuzzType(f, TypeGroupEvent) }
func FuzzPing(f *testing.F)       { fuzzType(f, TypePing) }
func FuzzPong(f *testing.F)       { fuzzType(f, TypePong) }
func FuzzGoAway(f *testing.F)     { fuzzType(f, TypeGoAway) }
func FuzzError(f *testing.F)      { fuzzType(f, TypeError) }

// FuzzEncodeDecode builds a valid value of a fuzzer-chosen type from
// fuzzer-chosen numbers and bytes and checks decode(encode(x)) == x: no
// valid value is refused or changed by the round trip.
func FuzzEncodeDecode(f *testing.F) {
	for typ := TypeLogin; typ <= typeMax; typ++ {
		f.Add(byte(typ), uint64(bob), uint64(1234), uint64(4321), uint64(0), uint64(vectorStamp), byte(0), []byte("hi"))
		f.Add(byte(typ), uint64(1<<64-1), uint64(1<<32), uint64(0), uint64(team), uint64(1), byte(0xff), opaque("b", 100))
	}
	f.Fuzz(func(t *testing.T, typ byte, a, b, c, d, e uint64, bits byte, body []byte) {
		v := buildValue(Type(typ%byte(typeMax))+1, [5]uint64{a, b, c, d, e}, bits, body)
		if v == nil {
			return
		}
		enc := v.Append(nil)
		got, err := decodeFrame(enc, len(enc))
		if err != nil {
			t.Fatalf("%T %+v encodes as %x, which does not decode: %v", v, v, enc, err)
		}
		if !sameFields(got, v) {
			t.Fatalf("round trip changed %+v into %+v", v, got)
		}
	})
}

// buildValue makes a valid value of type t: required ids are not zero,
// 32- and 16-bit fields are in range, text is UTF-8 within its limit.
func buildValue(t Type, n [5]uint64, bits byte, body []byte) frameValue {
	nz := func(x uint64) uint64 { return max(x, 1) }
	u32 := func(x uint64) uint32 { return uint32(x) }
	code := func(x uint64) Code { return Code(max(uint16(x), 1)) }
	flag := func(i uint) bool { return bits>>i&1 != 0 }
	members := func() []uint64 {
		var m []uint64
		for i := 0; i < len(body) && i < 8; i++ {
			m = append(m, nz(n[i%5]>>(8*uint(i%8))))
		}
		return m
	}
	op := GroupOp(1 + n[1]%uint64(groupOpMax))
	reason := func() string {
		r := strings.ToValidUTF8(string(body), "")
		for len(r) > MaxReason {
			_, size := utf8.DecodeLastRuneInString(r)
			r = r[:len(r)-size]
		}
		return r
	}
	switch t {
	case TypeLogin:
		return &Login{Token: body[:min(len(body), MaxToken)], Ping: u32(n[0]), Dict: u32(n[1]), Ack: n[2]}
	case TypeWelcome:
		return &Welcome{Version: u32(n[0]), User: nz(n[1]), Time: n[2], Ping: u32(n[3]), Dict: u32(n[4]),
			MaxFrame: u32(n[0] >> 32), Window: u32(n[1] >> 32), Last: n[3]}
	case TypeSend:
		return &Send{MsgID: nz(n[0]), To: nz(n[1]), Group: flag(0), Retry: flag(1), Body: body}
	case TypeAccept:
		return &Accept{MsgID: nz(n[0]), More: n[1], Ref: n[2]}
	case TypeRefuse:
		return &Refuse{MsgID: nz(n[0]), Code: code(n[1]), RetryAfter: u32(n[2]), Reason: reason()}
	case TypeDeliver:
		return &Deliver{Seq: nz(n[0]), From: nz(n[1]), MsgID: nz(n[2]), Group: n[3], Time: u32(n[4]), Body: body}
	case TypeAck:
		return &Ack{Seq: nz(n[0])}
	case TypeReceipt:
		x := &Receipt{Seq: nz(n[0]), MsgID: nz(n[1]), More: n[2], Read: flag(0), By: n[3]}
		if !x.Read && flag(1) { // an expired receipt always names its recipient
			x.Expired, x.By = true, nz(n[3])
		}
		return x
	case TypeRead:
		return &Read{To: nz(n[0]), MsgID: nz(n[1]), More: n[2], Group: flag(0)}
	case TypeSignal:
		s := &Signal{Peer: n[0], Kind: u32(n[1]), Group: n[2]}
		if s.Peer == 0 && s.Group == 0 {
			s.Peer = 1
		}
		return s
	case TypeGroup:
		g := &Group{MsgID: nz(n[0]), Op: op, Group: nz(n[2]), Members: members()}
		if op == GroupCreate {
			g.Group = 0
		}
		return g
	case TypeGroupEvent:
		return &GroupEvent{Seq: nz(n[0]), Group: nz(n[2]), Actor: nz(n[3]), Op: op, Time: u32(n[4]), Members: members()}
	case TypePing:
		return pingFrame{}
	case TypePong:
		return pongFrame{}
	case TypeGoAway:
		g := &GoAway{After: u32(n[0]), Code: Code(n[1])}
		if g.Code == CodeMoved || flag(0) {
			g.Addr = strings.ReplaceAll(reason(), "\x00", "")
			if len(g.Addr) > MaxAddr {
				g.Addr = strings.ToValidUTF8(g.Addr[:MaxAddr], "")
			}
			if g.Addr == "" {
				g.Addr = "h:1"
			}
		}
		return g
	case TypeError:
		return &Error{Code: code(n[0]), Reason: reason()}
	}
	return nil // BATCH: FuzzBatch and TestBatchRoundTrip
}
