package protocol

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// TestGolden pins the bytes of one frame of every type, written out by hand
// from the layouts in docs/PROTOCOL.md (bob = 7654321 = b1 97 d3 03,
// alice = 8765432 = f8 ff 96 04, msg 1234 = d2 09, seq 4321 = e1 21).
func TestGolden(t *testing.T) {
	body := []byte("hi")
	tests := []struct {
		name string
		v    frameValue
		hex  string
	}{
		{"LOGIN", &Login{Token: []byte{0xaa, 0xbb}, Ping: 60, Dict: 1, Ack: 4320},
			"08 01 02aabb 3c 01 e021"},
		{"WELCOME", &Welcome{Version: 1, User: bob, Time: 1000, Ping: 60, Dict: 0, MaxFrame: MaxFrame, Window: 64, Last: 4321},
			"10 02 01 b197d303 e807 3c 00 808804 40 e121"},
		{"SEND", &Send{MsgID: 1234, To: bob, Body: body}, "09 03 d209 b197d303 6869"},
		{"SEND group", &Send{MsgID: 1234, To: team, Group: true, Body: body}, "09 23 d209 b1dfd202 6869"},
		{"SEND retry", &Send{MsgID: 1234, To: bob, Retry: true, Body: body}, "09 43 d209 b197d303 6869"},
		{"SEND group retry", &Send{MsgID: 1234, To: team, Group: true, Retry: true, Body: body}, "09 63 d209 b1dfd202 6869"},
		{"ACCEPT", &Accept{MsgID: 1234}, "03 04 d209"},
		{"ACCEPT more", &Accept{MsgID: 1234, More: 9}, "04 24 d209 09"},
		{"ACCEPT ref", &Accept{MsgID: 1234, Ref: team}, "07 04 d209 b1dfd202"},
		{"REFUSE", &Refuse{MsgID: 1234, Code: CodeRetryLater, RetryAfter: 2000}, "06 05 d209 20 d00f"},
		{"DELIVER live", &Deliver{Seq: 4321, From: alice, MsgID: 1234, Body: body}, "0b 06 e121 f8ff9604 d209 6869"},
		{"DELIVER group time", &Deliver{Seq: 4321, From: alice, MsgID: 1234, Group: team, Time: 300, Body: body},
			"11 66 e121 f8ff9604 d209 b1dfd202 ac02 6869"},
		{"ACK", &Ack{Seq: 4321}, "03 08 e121"},
		{"RECEIPT", &Receipt{Seq: 4321, MsgID: 1234}, "05 09 e121 d209"},
		{"RECEIPT read more by", &Receipt{Seq: 4321, MsgID: 1234, More: 2, Read: true, By: bob},
			"0a 69 e121 d209 02 b197d303"},
		{"RECEIPT expired", &Receipt{Seq: 4321, MsgID: 1234, By: bob, Expired: true},
			"0a 09 e121 d209 b197d303 01"},
		{"READ", &Read{To: alice, MsgID: 1234, More: 3, Group: true}, "08 6a f8ff9604 d209 03"},
		{"SIGNAL", &Signal{Peer: bob, Kind: SignalTyping}, "06 0b b197d303 01"},
		{"SIGNAL group", &Signal{Kind: SignalPaused, Group: team}, "07 2b 00 02 b1dfd202"},
		{"GROUP", &Group{MsgID: 1234, Op: GroupAdd, Group: team, Members: []uint64{bob}}, "0c 0c d209 02 b1dfd202 b197d303"},
		{"GROUP_EVENT", &GroupEvent{Seq: 4321, Group: team, Actor: alice, Op: GroupLeave, Time: 300},
			"0e 4d e121 b1dfd202 f8ff9604 04 ac02"},
		{"PING", pingFrame{}, "01 0e"},
		{"PONG", pongFrame{}, "01 0f"},
		{"GOAWAY", &GoAway{After: 5000, Code: CodeShuttingDown}, "04 10 8827 14"},
		{"GOAWAY moved", &GoAway{After: 100, Code: CodeMoved, Addr: "h:1"}, "07 10 64 16 03 683a31"},
		{"ERROR", &Error{Code: CodeBadToken, Reason: "no"}, "04 11 08 6e6f"},
		{"BATCH", &batchFrame{FirstSeq: 4321, Entries: []batchEntry{
			{Deliver: &Deliver{Seq: 4321, From: alice, MsgID: 1234, Body: body}},
			{Deliver: &Deliver{Seq: 4322, From: alice, MsgID: 1235, Body: body}},
			{Receipt: &Receipt{Seq: 4323, MsgID: 77}},
		}}, "17 07 e121 09 06 f8ff9604 d209 6869 06 06 00 d309 6869 02 09 4d"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := strings.ReplaceAll(tt.hex, " ", "")
			if got := hex.EncodeToString(tt.v.Append(nil)); got != want {
				t.Fatalf("Append = %s, want %s", got, want)
			}
			got, err := decodeFrame(raw(want), MaxServerFrame)
			if err != nil {
				t.Fatal(err)
			}
			if !sameFields(got, tt.v) {
				t.Fatalf("decoded %+v, want %+v", got, tt.v)
			}
		})
	}
}

// TestRoundTrip encodes every vector case after existing bytes, decodes it,
// and checks the fields survive and the bytes before are untouched.
func TestRoundTrip(t *testing.T) {
	for _, c := range vectorCases() {
		t.Run(c.name, func(t *testing.T) {
			prefix := []byte("keep")
			b := c.v.Append(append([]byte(nil), prefix...))
			if !bytes.Equal(b[:len(prefix)], prefix) {
				t.Fatalf("Append overwrote the bytes before: %x", b[:len(prefix)])
			}
			enc := b[len(prefix):]
			if f, _, _ := ReadFrame(enc, len(enc)); FrameLen(len(f.Payload)) != len(enc) {
				t.Fatalf("FrameLen(%d) = %d, frame is %d bytes", len(f.Payload), FrameLen(len(f.Payload)), len(enc))
			}
			got, err := decodeFrame(enc, MaxServerFrame)
			if err != nil {
				t.Fatal(err)
			}
			if !sameFields(got, c.v) {
				t.Fatalf("round trip: got %+v, want %+v", got, c.v)
			}
			if again := got.Append(nil); !bytes.Equal(again, enc) {
				t.Fatalf("re-encoded %x, want %x", again, enc)
			}
		})
	}
}

// streamOf concatenates the encodings of every vector case.
func streamOf() ([]byte, int) {
	var b []byte
	cases := vectorCases()
	for _, c := range cases {
		b = c.v.Append(b)
	}
	return b, len(cases)
}

// gotFrame is a frame copied out of a read buffer.
type gotFrame struct {
	typ     Type
	flags   byte
	payload string
}

// readStream reads frames the way a connection does: chunks arrive, are
// appended to a buffer, and every whole frame at the front is consumed.
func readStream(chunks [][]byte, max int) ([]gotFrame, error) {
	var buf []byte
	var out []gotFrame
	for _, c := range chunks {
		buf = append(buf, c...)
		for {
			f, n, err := ReadFrame(buf, max)
			if errors.Is(err, ErrIncomplete) {
				break
			}
			if err != nil {
				return out, err
			}
			out = append(out, gotFrame{f.Type, f.Flags, string(f.Payload)})
			buf = buf[n:]
		}
	}
	if len(buf) != 0 {
		return out, fmt.Errorf("%d bytes left over", len(buf))
	}
	return out, nil
}

// TestSplitEveryByte cuts a stream of every frame type at every offset (and
// feeds it a byte at a time) and checks the same frames come out.
func TestSplitEveryByte(t *testing.T) {
	stream, count := streamOf()
	want, err := readStream([][]byte{stream}, MaxServerFrame)
	if err != nil || len(want) != count {
		t.Fatalf("whole stream: %d frames, %v; want %d", len(want), err, count)
	}
	for i := 0; i <= len(stream); i++ {
		got, err := readStream([][]byte{stream[:i], stream[i:]}, MaxServerFrame)
		if err != nil || fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("cut at %d: %d frames, %v", i, len(got), err)
		}
	}
	bytewise := make([][]byte, len(stream))
	for i := range stream {
		bytewise[i] = stream[i : i+1]
	}
	if got, err := readStream(bytewise, MaxServerFrame); err != nil || fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("byte at a time: %d frames, %v", len(got), err)
	}
}

// TestReadFrameLimitBeforeFrame checks that an oversized frame is refused
// from its length prefix alone, and a frame at the limit is waited for.
func TestReadFrameLimitBeforeFrame(t *testing.T) {
	at := AppendFrame(nil, TypeSend, 0, make([]byte, MaxFrame-1))
	over := AppendFrame(nil, TypeSend, 0, make([]byte, MaxFrame))
	tests := []struct {
		name  string
		input []byte
		want  error
	}{
		{"at the limit, prefix only", at[:3], ErrIncomplete},
		{"at the limit, header too", at[:4], ErrIncomplete},
		{"at the limit, one byte short", at[:len(at)-1], ErrIncomplete},
		{"at the limit, whole", at, nil},
		{"over the limit, prefix only", over[:3], ErrFrameTooLarge},
		{"over the limit, two of three prefix bytes", raw("ffff"), ErrIncomplete},
		{"must be over the limit, three unfinished prefix bytes", raw("ffffff"), ErrFrameTooLarge},
		{"over a tiny limit, one unfinished prefix byte", raw("80"), ErrFrameTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			max := MaxFrame
			if strings.Contains(tt.name, "tiny") {
				max = 100
			}
			_, n, err := ReadFrame(tt.input, max)
			if !errors.Is(err, tt.want) || (err == nil) != (tt.want == nil) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if err == nil && n != len(tt.input) {
				t.Fatalf("n = %d, want %d", n, len(tt.input))
			}
		})
	}
}

// TestReadFramePrefixVerdicts checks the promise that a prefix of any input
// gets either ErrIncomplete or the same verdict as the whole input.
func TestReadFramePrefixVerdicts(t *testing.T) {
	for _, bc := range invalidCases() {
		if bc.Input != "frame" {
			continue
		}
		b := raw(bc.Hex)
		_, _, whole := ReadFrame(b, MaxFrame)
		for i := 0; i < len(b); i++ {
			_, _, err := ReadFrame(b[:i], MaxFrame)
			if err != ErrIncomplete && errName(err) != errName(whole) {
				t.Errorf("%s: prefix of %d bytes: %v; whole: %v", bc.Name, i, err, whole)
			}
		}
	}
}

func TestCodeOf(t *testing.T) {
	tests := []struct {
		err  error
		want Code
	}{
		{ErrFrameTooLarge, CodeFrameTooLarge},
		{fmt.Errorf("read: %w", ErrFrameTooLarge), CodeFrameTooLarge},
		{ErrUnknownType, CodeUnknownType},
		{ErrMalformed, CodeProtocol},
		{wrapMalformed("zero id"), CodeProtocol},
		{ErrBadPreface, CodeProtocol},
		{ErrDecompress, CodeDecompression},
		{ErrUnsupportedVersion, CodeUnsupportedVersion},
		{ErrUnsupportedTransport, CodeUnsupportedTransport},
		{ErrIncomplete, CodeInternal}, // not a peer's fault: never sent
		{errors.New("disk on fire"), CodeInternal},
	}
	for _, tt := range tests {
		if got := CodeOf(tt.err); got != tt.want {
			t.Errorf("CodeOf(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
}

func TestCodes(t *testing.T) {
	for c := Code(1); c < 64; c++ {
		name := c.String()
		if strings.HasPrefix(name, "CODE_") {
			continue
		}
		if c.Fatal() != (c < 32) {
			t.Errorf("%v: Fatal() = %v", c, c.Fatal())
		}
	}
	if CodeSlowConsumer.String() != "SLOW_CONSUMER" || Code(999).String() != "CODE_999" {
		t.Errorf("names: %v, %v", CodeSlowConsumer, Code(999))
	}
	if !CodeInternal.Fatal() || CodeRetryLater.Fatal() {
		t.Error("INTERNAL must be fatal and RETRY_LATER must not")
	}
	if Type(0).Valid() || Type(0x12).Valid() || TypeError.String() != "ERROR" || Type(0x1f).String() != "Type(0x1f)" {
		t.Error("Type validity or names wrong")
	}
}

func TestReadPreface(t *testing.T) {
	tests := []struct {
		input     string
		version   byte
		transport byte
		err       error
	}{
		{"", 0, 0, ErrIncomplete},
		{"53", 0, 0, ErrIncomplete},
		{"535701", 0, 0, ErrIncomplete},
		{"53570100", 1, 0, nil},
		{"5357020001", 2, 0, nil}, // a newer client: the server answers with its own version
		{"53570101", 1, 1, nil},   // transport is the server's decision
		{"4f", 0, 0, ErrBadPreface},
		{"5300", 0, 0, ErrBadPreface},
		{"53570000", 0, 0, ErrUnsupportedVersion},
	}
	for _, tt := range tests {
		v, tr, err := ReadPreface(raw(tt.input))
		if v != tt.version || tr != tt.transport || err != tt.err {
			t.Errorf("ReadPreface(%s) = %d, %d, %v; want %d, %d, %v", tt.input, v, tr, err, tt.version, tt.transport, tt.err)
		}
	}
}

func TestStamp(t *testing.T) {
	at := time.Date(2026, 11, 26, 18, 42, 7, 0, time.UTC)
	if s := Stamp(at); s != vectorStamp || !StampTime(s).Equal(at) {
		t.Fatalf("Stamp(%v) = %d (%v), want %d", at, s, StampTime(s), vectorStamp)
	}
	if s := Stamp(Epoch.Add(-time.Hour)); s != 1 {
		t.Fatalf("Stamp before the epoch = %d, want 1", s)
	}
	if s := Stamp(Epoch.Add(1500 * time.Millisecond)); s != 1 {
		t.Fatalf("Stamp truncates to whole seconds: got %d, want 1", s)
	}
}

// TestErrorReasonAlwaysDecodes checks that Append cuts a long reason on a
// rune boundary and repairs invalid UTF-8, so the peer can decode it.
func TestErrorReasonAlwaysDecodes(t *testing.T) {
	tests := []struct {
		name, reason string
	}{
		{"long, multibyte at the cut", strings.Repeat("a", MaxReason-1) + "é and more"},
		{"invalid UTF-8", "bad \xc3( byte"},
		{"both", strings.Repeat("\xff", MaxReason+10)},
	}
	for _, tt := range tests {
		b := (&Error{Code: CodeInternal, Reason: tt.reason}).Append(nil)
		got, err := decodeFrame(b, MaxServerFrame)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		r := got.(*Error).Reason
		if len(r) > MaxReason || !utf8.ValidString(r) {
			t.Fatalf("%s: reason of %d bytes, valid %v", tt.name, len(r), utf8.ValidString(r))
		}
	}
}

// TestDecodeRefusesCompressed checks that the types that may be compressed
// refuse a payload that was not inflated first, instead of misreading it.
func TestDecodeRefusesCompressed(t *testing.T) {
	for _, typ := range []Type{TypeSend, TypeDeliver, TypeBatch, TypeGroup, TypeGroupEvent} {
		f := Frame{Type: typ, Flags: FlagCompressed, Payload: raw("01 01 01 01 01")}
		if err := newValue(typ).Decode(f); !errors.Is(err, ErrMalformed) {
			t.Errorf("%v: Decode of a compressed frame = %v, want ErrMalformed", typ, err)
		}
	}
}

// TestAllocs holds the hot paths to zero allocations.
func TestAllocs(t *testing.T) {
	send := Send{MsgID: 1234, To: bob, Body: opaque("body", 100)}
	retry := Send{MsgID: 1234, To: bob, Retry: true, Body: opaque("body", 100)}
	del := Deliver{Seq: 4321, From: alice, MsgID: 1234, Body: opaque("body", 100)}
	sendFrame, retryFrame, delFrame := send.Append(nil), retry.Append(nil), del.Append(nil)
	stream, _ := streamOf()
	buf := make([]byte, 0, 256)
	var (
		s Send
		d Deliver
	)
	tests := []struct {
		name string
		fn   func()
	}{
		{"ReadFrame stream", func() {
			for b := stream; len(b) > 0; {
				_, n, err := ReadFrame(b, MaxServerFrame)
				if err != nil {
					panic(err)
				}
				b = b[n:]
			}
		}},
		{"ReadFrame incomplete", func() { ReadFrame(sendFrame[:50], MaxFrame) }},
		{"Send.Decode", func() {
			f, _, _ := ReadFrame(sendFrame, MaxFrame)
			if s.Decode(f) != nil {
				panic("decode")
			}
		}},
		{"Send.Append", func() { buf = send.Append(buf[:0]) }},
		{"Send.Decode retry", func() {
			f, _, _ := ReadFrame(retryFrame, MaxFrame)
			if s.Decode(f) != nil || !s.Retry {
				panic("decode")
			}
		}},
		{"Send.Append retry", func() { buf = retry.Append(buf[:0]) }},
		{"Deliver.Decode", func() {
			f, _, _ := ReadFrame(delFrame, MaxServerFrame)
			if d.Decode(f) != nil {
				panic("decode")
			}
		}},
		{"Deliver.Append", func() { buf = del.Append(buf[:0]) }},
		{"Ack.Append", func() { buf = (&Ack{Seq: 4321}).Append(buf[:0]) }},
	}
	for _, tt := range tests {
		if n := testing.AllocsPerRun(100, tt.fn); n != 0 {
			t.Errorf("%s: %v allocs per run, want 0", tt.name, n)
		}
	}
}
