package protocol

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"
)

func clientHex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

var clientWelcome = Welcome{Version: 1, User: 42, Time: 1_700_000_000_000, Ping: 30, MaxFrame: MaxFrame, Window: 64, Last: 1}

func TestClientLogin(t *testing.T) {
	s := newClientFake(t)
	fc, res := s.dial(ClientOptions{Token: []byte("tok"), Ping: 29500 * time.Millisecond, Ack: 41})
	if got, want := fc.readN(PrefaceLen), []byte("SW\x01\x00"); !bytes.Equal(got, want) {
		t.Fatalf("preface = %x, want %x", got, want)
	}
	// token_len 3, "tok", ping 30 (rounded up), dict 0, ack 41.
	if _, raw := fc.frame(TypeLogin); !bytes.Equal(raw, clientHex(t, "08 01 03 746f6b 1e 00 29")) {
		t.Fatalf("LOGIN = %x", raw)
	}
	// The backlog arrives in the same write as WELCOME: nothing read with it may be lost.
	d := Deliver{Seq: 42, From: 7, MsgID: 9, Body: []byte("queued")}
	fc.write(d.Append(clientWelcome.Append(nil)))
	c := waitDial(t, res).client(t)
	if got := c.Welcome(); got != clientWelcome {
		t.Errorf("Welcome() = %+v, want %+v", got, clientWelcome)
	}
	got, err := c.RecvDeliver(clientCtx(t))
	if err != nil || !reflect.DeepEqual(*got, d) {
		t.Fatalf("RecvDeliver = %+v, %v; want %+v", got, err, d)
	}
}

func TestClientDialFails(t *testing.T) {
	tests := []struct {
		name   string
		opts   ClientOptions
		answer []byte // written after LOGIN; nil: close without a word
		code   Code   // the *Error's code wanted; 0: none
		is     error  // errors.Is target wanted; nil: none
		text   string // in the error; "": anything
	}{
		{name: "goaway moved", answer: (&GoAway{Code: CodeMoved, Addr: "10.0.0.2:7000"}).Append(nil), code: CodeMoved, text: "at 10.0.0.2:7000"},
		{name: "version 0", answer: (&Welcome{Version: 0, User: 1}).Append(nil), is: ErrUnsupportedVersion},
		{name: "a later version", answer: (&Welcome{Version: Version + 1, User: 1}).Append(nil), is: ErrUnsupportedVersion},
		{name: "malformed error", answer: AppendFrame(nil, TypeError, 0, nil), is: ErrMalformed},
		{name: "malformed goaway", answer: AppendFrame(nil, TypeGoAway, 0, nil), is: ErrMalformed},
		{name: "bad token", answer: (&Error{Code: CodeBadToken, Reason: "no"}).Append(nil), code: CodeBadToken},
		{name: "goaway", answer: (&GoAway{After: 500, Code: CodeShuttingDown}).Append(nil), code: CodeShuttingDown},
		{name: "pong before welcome", answer: AppendPong(nil), is: ErrMalformed},
		{name: "malformed welcome", answer: AppendFrame(nil, TypeWelcome, 0, []byte{1}), is: ErrMalformed},
		{name: "dictionary not offered", answer: (&Welcome{Version: 1, User: 1, Dict: 5}).Append(nil)},
		{name: "closed", is: io.EOF},
		{name: "silent", opts: ClientOptions{HandshakeTimeout: 50 * time.Millisecond}, answer: []byte{}, is: context.DeadlineExceeded},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newClientFake(t)
			fc, res := s.dial(tt.opts)
			fc.readN(PrefaceLen)
			fc.frame(TypeLogin)
			switch {
			case tt.answer == nil:
				fc.c.Close()
			case len(tt.answer) > 0:
				fc.write(tt.answer)
			}
			r := waitDial(t, res)
			if r.err == nil {
				r.c.Close()
				t.Fatal("Dial succeeded")
			}
			var e *Error
			if got := errors.As(r.err, &e); got != (tt.code != 0) || got && e.Code != tt.code {
				t.Errorf("Dial error %v: want code %v", r.err, tt.code)
			}
			if tt.is != nil && !errors.Is(r.err, tt.is) {
				t.Errorf("Dial error %v: want %v", r.err, tt.is)
			}
			if !strings.Contains(r.err.Error(), tt.text) {
				t.Errorf("Dial error %v: want %q in it", r.err, tt.text)
			}
			if tt.answer != nil {
				fc.expectEOF() // the client hangs up
			}
		})
	}
}

// TestClientDialRefused: a dial nobody answers fails Dial with the
// address and the network's error.
func TestClientDialRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	_, err = Dial(clientCtx(t), addr, ClientOptions{})
	var op *net.OpError
	if !errors.As(err, &op) || !strings.Contains(err.Error(), "protocol: dial "+addr) {
		t.Fatalf("Dial of a closed port: %v, want the dial's *net.OpError", err)
	}
}

func TestClientDialNoDictionary(t *testing.T) {
	_, err := Dial(clientCtx(t), "127.0.0.1:1", ClientOptions{Dict: 9})
	if err == nil || !strings.Contains(err.Error(), "no dictionary 9") {
		t.Fatalf("Dial with an unknown dictionary: %v", err)
	}
}

// TestClientEvents checks that every frame a server sends decodes to the
// exact Event, in order, and how the end of the connection reads.
func TestClientEvents(t *testing.T) {
	s := newClientFake(t)
	c, fc := s.login(ClientOptions{}, clientWelcome)

	want := []Event{
		&Deliver{Seq: 1, From: 7, MsgID: 100, Body: []byte("hello")},
		&Deliver{Seq: 2, From: 7, MsgID: 101, Time: 5000, Body: []byte("a")},
		&Deliver{Seq: 3, From: 7, MsgID: 102, Group: 9, Body: []byte("b")},
		&Receipt{Seq: 4, MsgID: 55, More: 2, Read: true},
		&GroupEvent{Seq: 5, Group: 9, Actor: 7, Op: GroupAdd, Members: []uint64{8, 10}},
		&Accept{MsgID: 55, More: 3},
		&Accept{MsgID: 57, Ref: 77},
		&Refuse{MsgID: 60, Code: CodeMailboxFull, RetryAfter: 250},
		&Receipt{Seq: 6, MsgID: 56, By: 8},
		&GroupEvent{Seq: 7, Group: 9, Actor: 8, Op: GroupLeave, Time: 99},
		&Signal{Peer: 7, Kind: SignalTyping},
		Pong{},
		&GoAway{After: 1000, Code: CodeShuttingDown},
	}
	var out []byte
	out = want[0].(*Deliver).Append(out)
	var bw BatchWriter
	bw.Reset(2)
	bw.Deliver(want[1].(*Deliver))
	bw.Deliver(want[2].(*Deliver)) // same sender: encoded as from 0
	bw.Receipt(want[3].(*Receipt))
	bw.GroupEvent(want[4].(*GroupEvent))
	out = bw.Append(out)
	out = want[5].(*Accept).Append(out)
	out = want[6].(*Accept).Append(out)
	out = want[7].(*Refuse).Append(out)
	out = want[8].(*Receipt).Append(out)
	out = want[9].(*GroupEvent).Append(out)
	out = want[10].(*Signal).Append(out)
	out = AppendPong(out)
	out = want[12].(*GoAway).Append(out)
	out = (&Error{Code: CodeSlowConsumer, Reason: "too slow"}).Append(out)
	fc.write(out)

	ctx := clientCtx(t)
	for i, w := range want {
		got, err := c.Recv(ctx)
		if err != nil || !reflect.DeepEqual(got, w) {
			t.Fatalf("event %d = %#v, %v; want %#v", i, got, err, w)
		}
	}
	if c.Seq() != 7 {
		t.Errorf("Seq() = %d, want 7", c.Seq())
	}
	// The server's ERROR comes out once as itself, then as ErrClosed wrapping it.
	_, err := c.Recv(ctx)
	if e, ok := err.(*Error); !ok || *e != (Error{Code: CodeSlowConsumer, Reason: "too slow"}) {
		t.Fatalf("Recv after the events = %v, want the *Error", err)
	}
	for range 2 {
		var e *Error
		if _, err := c.Recv(ctx); !errors.Is(err, ErrClosed) || !errors.As(err, &e) || e.Code != CodeSlowConsumer {
			t.Fatalf("Recv after the *Error = %v, want ErrClosed wrapping it", err)
		}
	}
	if _, err := c.Send(1, []byte("x")); !errors.Is(err, ErrClosed) {
		t.Errorf("Send after ERROR = %v, want ErrClosed", err)
	}
	fc.expectEOF()
}

// TestClientWrites checks the exact bytes of every frame the client writes.
func TestClientWrites(t *testing.T) {
	s := newClientFake(t)
	c, fc := s.login(ClientOptions{FirstMsgID: 1}, clientWelcome)
	tests := []struct {
		name  string
		write func() (msgID uint64, err error)
		msgID uint64 // wanted id; 0: none
		want  string
	}{
		{"send", func() (uint64, error) { return c.Send(300, []byte("hi")) }, 1, "06 03 01 ac02 6869"},
		{"send group", func() (uint64, error) { return c.SendGroup(5, []byte("x")) }, 2, "04 23 02 05 78"},
		{"send id", func() (uint64, error) { return 0, c.SendID(1000, 7, []byte("z"), false) }, 0, "05 03 e807 07 7a"},
		{"resend", func() (uint64, error) { return 0, c.Resend(1000, 7, []byte("z"), false) }, 0, "05 43 e807 07 7a"},
		{"resend group", func() (uint64, error) { return 0, c.Resend(2, 5, []byte("x"), true) }, 0, "04 63 02 05 78"},
		{"ack", func() (uint64, error) { return 0, c.Ack(130) }, 0, "03 08 8201"},
		{"ping", func() (uint64, error) { return 0, c.Ping() }, 0, "01 0e"},
		{"read", func() (uint64, error) { return 0, c.MarkRead(Read{To: 7, MsgID: 3, More: 2}) }, 0, "04 4a 07 03 02"},
		{"signal", func() (uint64, error) { return 0, c.Signal(Signal{Peer: 7, Kind: SignalTyping}) }, 0, "03 0b 07 01"},
		{"group", func() (uint64, error) { return c.Group(Group{Op: GroupCreate, Members: []uint64{7, 8}}) }, 3, "06 0c 03 01 00 07 08"},
		{"group id", func() (uint64, error) { return c.Group(Group{MsgID: 9, Op: GroupLeave, Group: 4}) }, 9, "04 0c 09 04 04"},
		{"raw", func() (uint64, error) { return 0, c.WriteRaw([]byte{0xff, 0x00}) }, 0, "ff 00"},
		{"send after raw", func() (uint64, error) { return c.Send(1, []byte("y")) }, 4, "04 03 04 01 79"},
	}
	for _, tt := range tests {
		id, err := tt.write()
		if err != nil || id != tt.msgID {
			t.Fatalf("%s: id %d, %v; want id %d", tt.name, id, err, tt.msgID)
		}
		want := clientHex(t, tt.want)
		if got := fc.readN(len(want)); !bytes.Equal(got, want) {
			t.Fatalf("%s wrote %x, want %x", tt.name, got, want)
		}
	}
	if c.NextMsgID() != 5 {
		t.Errorf("NextMsgID() = %d, want 5", c.NextMsgID())
	}
	c.Close()
	fc.expectEOF() // and nothing more was written
}

func TestClientDefaultMsgIDs(t *testing.T) {
	s := newClientFake(t)
	before := uint64(time.Since(Epoch).Microseconds())
	c1, _ := s.login(ClientOptions{}, clientWelcome)
	id, err := c1.Send(1, nil)
	c2, _ := s.login(ClientOptions{}, clientWelcome)
	if err != nil || id < before || c2.NextMsgID() <= id {
		t.Fatalf("first ids %d (%v) then %d, started at %d: a new client must not reuse ids", id, err, c2.NextMsgID(), before)
	}
}

func TestClientAckAll(t *testing.T) {
	s := newClientFake(t)
	c, fc := s.login(ClientOptions{}, clientWelcome)
	var bw BatchWriter
	bw.Reset(8)
	bw.Deliver(&Deliver{Seq: 8, From: 3, MsgID: 1, Body: []byte("b")})
	bw.Receipt(&Receipt{Seq: 9, MsgID: 4})
	fc.write(bw.Append((&Deliver{Seq: 7, From: 3, MsgID: 2, Body: []byte("a")}).Append(nil)))

	if err := c.AckAll(); err != nil { // nothing received yet: writes nothing
		t.Fatal(err)
	}
	ctx := clientCtx(t)
	for range 3 {
		if _, err := c.Recv(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if c.Seq() != 9 {
		t.Fatalf("Seq() = %d, want 9", c.Seq())
	}
	if err := c.AckAll(); err != nil {
		t.Fatal(err)
	}
	if err := c.AckAll(); err != nil { // already acknowledged: writes nothing
		t.Fatal(err)
	}
	c.Ping()
	if got, want := fc.readN(5), clientHex(t, "02 08 09 01 0e"); !bytes.Equal(got, want) {
		t.Fatalf("wrote %x, want one ACK 9 then PING: %x", got, want)
	}
}

func TestClientAutoAck(t *testing.T) {
	s := newClientFake(t)
	_, fc := s.login(ClientOptions{AutoAck: true}, clientWelcome)
	var bw BatchWriter
	bw.Reset(10)
	for seq := uint64(10); seq <= 12; seq++ {
		bw.Deliver(&Deliver{Seq: seq, From: 3, MsgID: seq, Body: []byte("m")})
	}
	out := bw.Append(nil)
	out = (&Accept{MsgID: 5}).Append(out)
	out = (&Receipt{Seq: 13, MsgID: 5}).Append(out)
	fc.write(out)
	// One ACK per frame with entries, without anyone calling Recv.
	if got, want := fc.readN(6), clientHex(t, "02 08 0c 02 08 0d"); !bytes.Equal(got, want) {
		t.Fatalf("wrote %x, want %x", got, want)
	}
}

func TestClientClose(t *testing.T) {
	s := newClientFake(t)
	c, fc := s.login(ClientOptions{}, clientWelcome)
	if err := c.Close(); err != nil {
		t.Fatalf("Close = %v", err)
	}
	fc.expectEOF()
	if _, err := c.Recv(clientCtx(t)); err != ErrClosed {
		t.Errorf("Recv after Close = %v, want ErrClosed", err)
	}
	if _, err := c.Send(1, []byte("x")); err != ErrClosed {
		t.Errorf("Send after Close = %v, want ErrClosed", err)
	}
	if err := c.Close(); err != nil {
		t.Errorf("second Close = %v", err)
	}
}

// TestClientCloseStalled closes a client whose read loop waits on a full
// event channel: the slow consumer tests produce.
func TestClientCloseStalled(t *testing.T) {
	s := newClientFake(t)
	c, fc := s.login(ClientOptions{Events: 1}, clientWelcome)
	var out []byte
	for seq := uint64(1); seq <= 3; seq++ {
		out = (&Deliver{Seq: seq, From: 3, MsgID: seq, Body: []byte("m")}).Append(out)
	}
	fc.write(out)
	if d, err := c.RecvDeliver(clientCtx(t)); err != nil || d.Seq != 1 {
		t.Fatalf("RecvDeliver = %v, %v", d, err)
	}
	closed := make(chan error, 1)
	go func() { closed <- c.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(clientWait):
		t.Fatal("Close hangs while the event channel is full")
	}
	fc.expectEOF()
}

func TestClientServerHangsUp(t *testing.T) {
	s := newClientFake(t)
	c, fc := s.login(ClientOptions{}, clientWelcome)
	fc.write([]byte{0x05, 0x06}) // the start of a DELIVER
	fc.c.Close()
	_, err := c.Recv(clientCtx(t))
	if !errors.Is(err, ErrClosed) || !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("Recv = %v, want ErrClosed wrapping io.ErrUnexpectedEOF", err)
	}
	if d, err := c.RecvDeliver(clientCtx(t)); !errors.Is(err, ErrClosed) {
		t.Fatalf("RecvDeliver = %v, %v, want ErrClosed", d, err)
	}
	if err := c.Ping(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Ping = %v, want ErrClosed", err)
	}
}

// TestClientBadServerFrames checks that the client rejects what a server must
// not send, tells the server why with ERROR, and hangs up.
func TestClientBadServerFrames(t *testing.T) {
	tests := []struct {
		name  string
		frame []byte
		is    error
		code  Code
	}{
		{"zero seq", clientHex(t, "04 06 00 07 01"), ErrMalformed, CodeProtocol},
		{"unknown type", clientHex(t, "01 1f"), ErrUnknownType, CodeUnknownType},
		{"login from server", (&Login{Token: []byte("x")}).Append(nil), ErrMalformed, CodeProtocol},
		{"too large", clientHex(t, "81 80 10"), ErrFrameTooLarge, CodeFrameTooLarge},
		{"pong with payload", clientHex(t, "02 0f 00"), ErrMalformed, CodeProtocol},
		{"compressed, no dictionary", clientHex(t, "04 86 01 02 03"), ErrDecompress, CodeDecompression},
		{"batch of a signal", clientHex(t, "05 07 01 02 0b 07"), ErrMalformed, CodeProtocol},
		{"error cut short", clientHex(t, "01 11"), ErrMalformed, CodeProtocol},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newClientFake(t)
			c, fc := s.login(ClientOptions{}, clientWelcome)
			fc.write(tt.frame)
			if _, err := c.Recv(clientCtx(t)); !errors.Is(err, tt.is) || !errors.Is(err, ErrClosed) {
				t.Fatalf("Recv = %v, want ErrClosed wrapping %v", err, tt.is)
			}
			f, _ := fc.frame(TypeError)
			var e Error
			if err := e.Decode(f); err != nil || e.Code != tt.code {
				t.Fatalf("client sent ERROR %+v (%v), want code %v", e, err, tt.code)
			}
			fc.expectEOF()
		})
	}
}

func TestClientCompressed(t *testing.T) {
	s := newClientFake(t)
	w := clientWelcome
	w.Dict = 7
	opts := ClientOptions{Dict: 7, inflaterFor: func(d uint32) inflater {
		if d == 7 {
			return reverseInflater{t}
		}
		return nil
	}}
	fc, res := s.dial(opts)
	fc.readN(PrefaceLen)
	if f, _ := fc.frame(TypeLogin); !bytes.Equal(f.Payload, clientHex(t, "00 00 07 00")) {
		t.Fatalf("LOGIN payload %x, want dict 7", f.Payload)
	}
	d := Deliver{Seq: 3, From: 4, MsgID: 5, Body: []byte("squeezed")}
	plain := d.Append(nil)
	payload := plain[2:] // one length byte, one header byte
	reversed := make([]byte, len(payload))
	for i := range payload {
		reversed[len(payload)-1-i] = payload[i]
	}
	fc.write(AppendFrame(w.Append(nil), TypeDeliver, FlagCompressed, reversed))
	c := waitDial(t, res).client(t)
	got, err := c.Recv(clientCtx(t))
	if err != nil || !reflect.DeepEqual(got, &d) {
		t.Fatalf("Recv = %+v, %v; want %+v", got, err, d)
	}
}

func TestClientWaitAccept(t *testing.T) {
	s := newClientFake(t)
	c, fc := s.login(ClientOptions{}, clientWelcome)
	out := AppendPong(nil)
	out = (&Accept{MsgID: 10, More: 2}).Append(out)
	out = (&Deliver{Seq: 1, From: 2, MsgID: 3, Body: []byte("d")}).Append(out)
	out = (&Refuse{MsgID: 20, Code: CodeMailboxFull, RetryAfter: 100, Reason: "mailbox of 7 holds 10000 entries"}).Append(out)
	fc.write(out)
	ctx := clientCtx(t)
	if a, err := c.WaitAccept(ctx, 12); err != nil || a.MsgID != 10 {
		t.Fatalf("WaitAccept(12) = %+v, %v; want the ACCEPT of 10..12", a, err)
	}
	if d, err := c.RecvDeliver(ctx); err != nil || d.Seq != 1 {
		t.Fatalf("RecvDeliver = %+v, %v", d, err)
	}
	var re *RefusedError
	if _, err := c.WaitAccept(ctx, 20); !errors.As(err, &re) || re.Code != CodeMailboxFull || re.RetryAfter != 100 {
		t.Fatalf("WaitAccept(20) = %v, want a MAILBOX_FULL refusal", err)
	}
	if want := "protocol: msg 20 refused: MAILBOX_FULL (retry after 100ms): mailbox of 7 holds 10000 entries"; re.Error() != want {
		t.Fatalf("RefusedError = %q, want %q", re.Error(), want)
	}
	short, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := c.Recv(short); err != context.Canceled {
		t.Fatalf("Recv with a cancelled context = %v", err)
	}
}

// TestClientBodiesOwned checks that a body outlives the read buffer it came
// in (the buffer is reused for the next frame) and that a frame larger than
// the initial buffer arrives whole.
func TestClientBodiesOwned(t *testing.T) {
	s := newClientFake(t)
	c, fc := s.login(ClientOptions{}, clientWelcome)
	ctx := clientCtx(t)
	first := Deliver{Seq: 1, From: 2, MsgID: 3, Body: []byte("aaaa")}
	fc.write(first.Append(nil))
	d1, err := c.RecvDeliver(ctx)
	if err != nil {
		t.Fatal(err)
	}
	big := Deliver{Seq: 2, From: 2, MsgID: 4, Body: bytes.Repeat([]byte("b"), MaxBody)}
	fc.write(big.Append(nil))
	d2, err := c.RecvDeliver(ctx)
	if err != nil || !reflect.DeepEqual(*d2, big) {
		t.Fatalf("RecvDeliver of %d bytes: %v", len(big.Body), err)
	}
	if !reflect.DeepEqual(*d1, first) {
		t.Fatalf("first DELIVER changed to %+v after the next frame", d1)
	}
}

func TestClientKeepalive(t *testing.T) {
	t.Parallel()
	s := newClientFake(t)
	w := clientWelcome
	w.Ping = 1 // the shortest interval the wire can grant
	_, fc := s.login(ClientOptions{Keepalive: true}, w)
	start := time.Now()
	fc.frame(TypePing)
	if d := time.Since(start); d < 500*time.Millisecond {
		t.Fatalf("PING after %v, want about 1s", d)
	}
}

// TestClientWriteTimeout fills the socket of a server that stops reading: a
// write fails after WriteTimeout and ends the connection.
func TestClientWriteTimeout(t *testing.T) {
	s := newClientFake(t)
	c, _ := s.login(ClientOptions{WriteTimeout: 20 * time.Millisecond}, clientWelcome)
	body := make([]byte, MaxBody)
	var err error
	for i := 0; i < 4096 && err == nil; i++ { // 256 MiB: far more than socket buffers hold
		_, err = c.Send(1, body)
	}
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Send to a server that does not read = %v, want a deadline error", err)
	}
	if _, err := c.Recv(clientCtx(t)); !errors.Is(err, ErrClosed) {
		t.Fatalf("Recv after a failed write = %v, want ErrClosed", err)
	}
}

// TestClientStopsReadingWhenFull checks the bound: with Events unreceived,
// the client stops reading and the server's writes block, as a slow
// consumer's do.
func TestClientStopsReadingWhenFull(t *testing.T) {
	s := newClientFake(t)
	c, fc := s.login(ClientOptions{Events: 2}, clientWelcome)
	body := make([]byte, MaxBody)
	fc.c.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
	var err error
	seq := uint64(1)
	for ; seq <= 4096 && err == nil; seq++ { // 256 MiB: far more than socket buffers hold
		_, err = fc.c.Write((&Deliver{Seq: seq, From: 2, MsgID: seq, Body: body}).Append(nil))
	}
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("server wrote %d DELIVERs to a client nobody receives from (%v): it does not stop reading", seq-1, err)
	}
	if d, err := c.RecvDeliver(clientCtx(t)); err != nil || d.Seq != 1 {
		t.Fatalf("RecvDeliver = %v, %v; want seq 1", d, err)
	}
}

// TestClientDictV1 runs compressed frames from the real Codec through the
// client, and a compressed frame whose claim is over MaxServerFrame.
func TestClientDictV1(t *testing.T) {
	codec, ok := Lookup(DictV1)
	if !ok {
		t.Fatal("no DictV1")
	}
	compressed := func(plain []byte) []byte {
		f, _, err := ReadFrame(plain, len(plain))
		if err != nil {
			t.Fatal(err)
		}
		z := codec.AppendFrame(nil, f.Type, f.Flags, f.Payload)
		if zf, _, err := ReadFrame(z, len(z)); err != nil || !zf.Has(FlagCompressed) {
			t.Fatalf("%v of %d bytes did not compress (%v)", f.Type, len(plain), err)
		}
		return z
	}
	text := []byte(strings.Repeat("see you at the station at eight, bring the tickets please. ", 4))
	d := Deliver{Seq: 5, From: 7, MsgID: 11, Body: text}
	e := Deliver{Seq: 6, From: 7, MsgID: 12, Group: 3, Body: text[:100]}
	var bw BatchWriter
	bw.Reset(6)
	bw.Deliver(&e)

	w := clientWelcome
	w.Dict = DictV1
	c, fc := newClientFake(t).login(ClientOptions{Dict: DictV1}, w)
	fc.write(append(compressed(d.Append(nil)), compressed(bw.Append(nil))...))
	ctx := clientCtx(t)
	for _, want := range []*Deliver{&d, &e} {
		if got, err := c.RecvDeliver(ctx); err != nil || !reflect.DeepEqual(got, want) {
			t.Fatalf("RecvDeliver = %+v, %v; want %+v", got, err, want)
		}
	}

	bomb := Deliver{Seq: 7, From: 7, MsgID: 13, Body: make([]byte, MaxServerFrame)}
	fc.write(compressed(bomb.Append(nil)))
	if _, err := c.Recv(ctx); !errors.Is(err, ErrDecompress) {
		t.Fatalf("Recv of a frame inflating past MaxServerFrame = %v, want ErrDecompress", err)
	}
	f, _ := fc.frame(TypeError)
	var got Error
	if err := got.Decode(f); err != nil || got.Code != CodeDecompression {
		t.Fatalf("client sent ERROR %+v (%v), want DECOMPRESSION", got, err)
	}
}

// TestClientAckAllSkipsDiscardedEntries: entries that WaitAccept and
// RecvDeliver discard never reached the caller, so AckAll must not
// acknowledge them (an ACK is cumulative: it would cover them too), while
// what the caller did get before them is acknowledged.
func TestClientAckAllSkipsDiscardedEntries(t *testing.T) {
	s := newClientFake(t)
	c, fc := s.login(ClientOptions{FirstMsgID: 5}, clientWelcome)
	ctx := clientCtx(t)
	var out []byte
	out = (&Deliver{Seq: 3, From: 2, MsgID: 1, Body: []byte("seen")}).Append(out)
	out = (&Receipt{Seq: 4, MsgID: 9}).Append(out)  // discarded by WaitAccept
	out = (&Accept{MsgID: 5}).Append(out)           //
	out = (&Receipt{Seq: 5, MsgID: 10}).Append(out) // discarded by RecvDeliver
	out = (&Deliver{Seq: 6, From: 2, MsgID: 2}).Append(out)
	fc.write(out)

	if _, err := c.Recv(ctx); err != nil { // seq 3, received
		t.Fatal(err)
	}
	if _, err := c.WaitAccept(ctx, 5); err != nil {
		t.Fatal(err)
	}
	if d, err := c.RecvDeliver(ctx); err != nil || d.Seq != 6 {
		t.Fatalf("RecvDeliver: %+v, %v", d, err)
	}
	if err := c.AckAll(); err != nil {
		t.Fatal(err)
	}
	c.Ping()
	// ACK 3, not 6: 4 and 5 were discarded.
	if got, want := fc.readN(5), clientHex(t, "02 08 03 01 0e"); !bytes.Equal(got, want) {
		t.Fatalf("wrote %x, want ACK 3 then PING: %x", got, want)
	}
}
