package client_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"switchboard/client"
	"switchboard/internal/testutil"
	"switchboard/protocol"
)

// dialFake dials fs with opts (a token and short backoffs filled in), lets
// welcome answer the first LOGIN, and returns the Conn, closed when the
// test ends, and its first connection.
func dialFake(t *testing.T, fs *fakeServer, opts client.Options, welcome func(*fakeConn)) (*client.Conn, *fakeConn) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	opts.Token = func(context.Context) ([]byte, error) { return []byte{1}, nil }
	opts.Session = client.Config{MinBackoff: 20 * time.Millisecond, MaxBackoff: 50 * time.Millisecond}
	type dialed struct {
		c   *client.Conn
		err error
	}
	done := make(chan dialed, 1)
	go func() {
		c, err := client.Dial(ctx, fs.addr(), opts)
		done <- dialed{c, err}
	}()
	fc := fs.next(t)
	welcome(fc)
	d := <-done
	if d.err != nil {
		t.Fatal(d.err)
	}
	t.Cleanup(func() { d.c.Close() })
	return d.c, fc
}

// expectError reads what the client writes until its ERROR, and fails the
// test unless the code is want, or if the client closes first.
func (fc *fakeConn) expectError(t *testing.T, want protocol.Code) {
	t.Helper()
	fc.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		f, err := fc.fr.Next()
		if err != nil {
			t.Fatalf("the client closed without an ERROR: %v", err)
		}
		if f.Type != protocol.TypeError {
			continue // an ACK or PING written before
		}
		var e protocol.Error
		if err := e.Decode(f); err != nil || e.Code != want {
			t.Fatalf("ERROR %v %q (%v), want %v", e.Code, e.Reason, err, want)
		}
		return
	}
}

// TestConnAnswersABrokenFrame: a frame the client cannot read is answered
// with an ERROR saying why before the client closes (PROTOCOL.md 11), so
// the server's log says what it sent wrong: a type the protocol does not
// have, a compressed frame with no dictionary agreed, a payload that does
// not decode. The client then logs in again.
func TestConnAnswersABrokenFrame(t *testing.T) {
	fs := newFakeServer(t)
	for _, tc := range []struct {
		name  string
		frame []byte
		want  protocol.Code
	}{
		{name: "an unknown type", frame: []byte{1, 0x1f}, want: protocol.CodeUnknownType}, // type 0x1f does not exist
		{name: "compressed without a dictionary", want: protocol.CodeDecompression,
			frame: protocol.AppendFrame(nil, protocol.TypeDeliver, protocol.FlagCompressed, []byte{0, 0, 0})},
		{name: "an ERROR cut short", frame: protocol.AppendFrame(nil, protocol.TypeError, 0, nil), want: protocol.CodeProtocol},
		{name: "a GOAWAY cut short", frame: protocol.AppendFrame(nil, protocol.TypeGoAway, 0, nil), want: protocol.CodeProtocol},
		{name: "a DELIVER cut short", frame: protocol.AppendFrame(nil, protocol.TypeDeliver, 0, []byte{1}), want: protocol.CodeProtocol},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, fc := dialFake(t, fs, client.Options{}, func(fc *fakeConn) { fc.welcome(t) })
			fc.write(t, tc.frame)
			fc.expectError(t, tc.want)
			fs.next(t) // and it logs in again
		})
	}
}

// fakeServer is a listener on 127.0.0.1:0 that reads each connection's
// preface and LOGIN and hands the connection to the test, which answers it
// frame by frame: a server without a store, for what a real node cannot be
// made to do (a redirect).
type fakeServer struct {
	ln    net.Listener
	conns chan *fakeConn // logged-in connections, in order; the test takes them
}

// fakeConn is one connection of a fakeServer, past its LOGIN.
type fakeConn struct {
	nc    net.Conn
	fr    *protocol.FrameReader
	login protocol.Login // Token copied out of the frame
}

func newFakeServer(t *testing.T) *fakeServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fs := &fakeServer{ln: ln, conns: make(chan *fakeConn, 16)}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { nc.Close() })
			go fs.handshake(nc)
		}
	}()
	return fs
}

func (fs *fakeServer) addr() string { return fs.ln.Addr().String() }

func (fs *fakeServer) handshake(nc net.Conn) {
	nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	var pre [protocol.PrefaceLen]byte
	if _, err := io.ReadFull(nc, pre[:]); err != nil {
		nc.Close()
		return
	}
	fr := protocol.NewFrameReader(nc)
	f, err := fr.Next()
	fc := &fakeConn{nc: nc, fr: fr}
	if err != nil || f.Type != protocol.TypeLogin || fc.login.Decode(f) != nil {
		nc.Close()
		return
	}
	fc.login.Token = bytes.Clone(fc.login.Token)
	nc.SetReadDeadline(time.Time{})
	fs.conns <- fc
}

// next returns the server's next logged-in connection, or fails the test
// after 10 s.
func (fs *fakeServer) next(t *testing.T) *fakeConn {
	t.Helper()
	fc, ok := fs.take()
	if !ok {
		t.Fatalf("no LOGIN at %s", fs.addr())
	}
	return fc
}

// take is next for a goroutine other than the test's: false after 10 s.
func (fs *fakeServer) take() (*fakeConn, bool) {
	select {
	case fc := <-fs.conns:
		return fc, true
	case <-time.After(10 * time.Second):
		return nil, false
	}
}

func (fc *fakeConn) write(t *testing.T, b []byte) {
	t.Helper()
	if _, err := fc.nc.Write(b); err != nil {
		t.Fatal(err)
	}
}

func (fc *fakeConn) welcome(t *testing.T) {
	t.Helper()
	w := protocol.Welcome{Version: protocol.Version, User: 7, Time: uint64(time.Now().UnixMilli()), Ping: 600,
		MaxFrame: protocol.MaxFrame, Window: 256, Last: fc.login.Ack}
	fc.write(t, w.Append(nil))
}

// send returns the next SEND the client wrote, skipping ACKs and PINGs.
func (fc *fakeConn) send(t *testing.T) protocol.Send {
	t.Helper()
	f := fc.nextFrame(t)
	var s protocol.Send
	if f.Type != protocol.TypeSend || s.Decode(f) != nil {
		t.Fatalf("the client wrote %v, want a SEND", f.Type)
	}
	return s
}

// TestConnFollowsRedirect: a node that is not the user's home answers with
// GOAWAY MOVED; the Conn logs in at the address it names with the same
// LOGIN (token and resume point), resends what it had not had accepted
// with flag B, reconnects there after a lost connection, and goes back to
// the address it was configured with once an attempt there fails. Close
// does not wait for a login in progress.
func TestConnFollowsRedirect(t *testing.T) {
	away, home := newFakeServer(t), newFakeServer(t)
	tok := []byte("token of user 7")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	type dialed struct {
		c   *client.Conn
		err error
	}
	done := make(chan dialed, 1)
	go func() {
		c, err := client.Dial(ctx, away.addr(), client.Options{
			Token:   func(context.Context) ([]byte, error) { return tok, nil },
			Session: client.Config{Ack: 4320, MinBackoff: 20 * time.Millisecond, MaxBackoff: 50 * time.Millisecond},
		})
		done <- dialed{c, err}
	}()

	// The first node takes the login, sees a SEND, then sends the user home
	// before accepting it.
	first := away.next(t)
	first.welcome(t)
	d := <-done
	if d.err != nil {
		t.Fatal(d.err)
	}
	c := d.c
	defer c.Close()
	id, err := c.Send(9, false, []byte("hi"))
	if err != nil {
		t.Fatal(err)
	}
	if s := first.send(t); s.MsgID != id || s.Retry {
		t.Fatalf("first SEND: msg_id %d retry %v, want %d without flag B", s.MsgID, s.Retry, id)
	}
	first.write(t, (&protocol.GoAway{After: 20, Code: protocol.CodeMoved, Addr: home.addr()}).Append(nil))
	first.nc.Close()

	at := home.next(t)
	if !bytes.Equal(at.login.Token, tok) || at.login.Ack != 4320 {
		t.Fatalf("LOGIN at home: token %q ack %d, want %q and 4320", at.login.Token, at.login.Ack, tok)
	}
	at.welcome(t)
	if s := at.send(t); s.MsgID != id || !s.Retry || string(s.Body) != "hi" {
		t.Fatalf("SEND at home: msg_id %d retry %v body %q, want %d with flag B, \"hi\"", s.MsgID, s.Retry, s.Body, id)
	}
	at.write(t, (&protocol.Accept{MsgID: id}).Append(nil))
	if a := next[*protocol.Accept](t, c, nil); a.MsgID != id {
		t.Fatalf("ACCEPT of %d, want %d", a.MsgID, id)
	}

	// A lost connection: the Conn comes back to the home node, not to the
	// address it was configured with.
	at.nc.Close()
	again := home.next(t)
	again.welcome(t)
	next[*client.Reconnected](t, c, nil)

	// The home node goes: the attempt there fails, and the next goes to
	// the configured address.
	home.ln.Close()
	again.nc.Close()
	back := away.next(t)
	if back.login.Ack != 4320 {
		t.Fatalf("LOGIN back at the configured address: ack %d, want 4320", back.login.Ack)
	}

	// Close while that login waits for its WELCOME: it cuts the login
	// short instead of waiting out its 10 s timeout.
	closesWithin(t, c, 5*time.Second, "Close waited for a login in progress")
}

// TestDialFollowsRedirect: a GOAWAY MOVED in answer to Dial's first LOGIN
// is followed before Dial returns, after the delay drawn in [0, after]
// (the longest, with this Rand); a fourth in a row is not. A ctx that ends
// during the delay ends Dial with an error naming the redirect.
func TestDialFollowsRedirect(t *testing.T) {
	away, home := newFakeServer(t), newFakeServer(t)
	const after = 100 // ms
	opts := client.Options{
		Token:   func(context.Context) ([]byte, error) { return []byte("t"), nil },
		Session: client.Config{Ack: 12, Rand: func(n int64) int64 { return n - 1 }},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	waited := make(chan time.Duration, 1) // from the GOAWAY to the LOGIN at home
	go func() {
		var movedAt time.Time
		if fc, ok := away.take(); ok {
			movedAt = time.Now()
			fc.nc.Write((&protocol.GoAway{After: after, Code: protocol.CodeMoved, Addr: home.addr()}).Append(nil))
		}
		if fc, ok := home.take(); ok {
			waited <- time.Since(movedAt)
			w := protocol.Welcome{Version: protocol.Version, User: 7, MaxFrame: protocol.MaxFrame, Window: 256, Last: 12}
			fc.nc.Write(w.Append(nil))
		}
	}()
	c, err := client.Dial(ctx, away.addr(), opts)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if w := <-waited; w < after*time.Millisecond {
		t.Fatalf("the LOGIN at home came %v after GOAWAY MOVED, want the drawn %d ms", w, after)
	}

	// Two nodes that each say the other is home: three redirects are
	// followed, and the fourth is Dial's error.
	go func() {
		for i := range client.MaxRedirects + 1 {
			fs, to := away, home
			if i%2 == 1 {
				fs, to = home, away
			}
			fc, ok := fs.take()
			if !ok {
				return
			}
			fc.nc.Write((&protocol.GoAway{Code: protocol.CodeMoved, Addr: to.addr()}).Append(nil))
		}
	}()
	_, err = client.Dial(ctx, away.addr(), opts)
	var pe *protocol.Error
	if !errors.As(err, &pe) || pe.Code != protocol.CodeMoved {
		t.Fatalf("Dial after %d redirects: %v, want the MOVED refusal", client.MaxRedirects+1, err)
	}

	// ctx ends during the redirect's delay of 15 s: Dial returns then, and
	// says where it was sent, rather than dialling there with a dead ctx.
	go func() {
		if fc, ok := away.take(); ok {
			fc.nc.Write((&protocol.GoAway{After: 15_000, Code: protocol.CodeMoved, Addr: home.addr()}).Append(nil))
		}
	}()
	short, cancelShort := context.WithCancel(ctx)
	defer cancelShort()
	// The delay is drawn once the GOAWAY is read; ctx ends soon after.
	opts.Session.Rand = func(n int64) int64 { time.AfterFunc(100*time.Millisecond, cancelShort); return n - 1 }
	_, err = client.Dial(short, away.addr(), opts)
	if errors.As(err, &pe) && pe.Code == protocol.CodeMoved {
		return // ctx ended before the wait began, on a busy machine: Dial returned the refusal
	}
	if want := "(redirected to " + home.addr() + ")"; !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), want) {
		t.Fatalf("Dial cancelled during a redirect's delay: %v, want context.Canceled %s", err, want)
	}
}

// TestConnDeadAfterSilence: a server that welcomes, then answers nothing,
// not even the PING: after the ping interval and DeadAfter the Conn takes
// the connection for dead, closes it and logs in again.
func TestConnDeadAfterSilence(t *testing.T) {
	fs := newFakeServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	dialed := make(chan *client.Conn, 1)
	go func() {
		c, err := client.Dial(ctx, fs.addr(), client.Options{Token: func(context.Context) ([]byte, error) { return []byte("t"), nil }, DeadAfter: 300 * time.Millisecond})
		if err != nil {
			t.Error(err)
		}
		dialed <- c
	}()
	first := fs.next(t)
	w := protocol.Welcome{Version: protocol.Version, User: 7, Time: uint64(time.Now().UnixMilli()), Ping: 1, MaxFrame: protocol.MaxFrame, Window: 256}
	first.write(t, w.Append(nil))
	c := <-dialed
	if c == nil {
		t.FailNow()
	}
	defer c.Close()
	first.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	pinged := false
	for {
		f, err := first.fr.Next()
		if err != nil {
			break // the client closed it
		}
		pinged = pinged || f.Type == protocol.TypePing
	}
	if !pinged {
		t.Error("the client closed the connection without a PING first")
	}
	second := fs.next(t)
	if second.login.Token == nil {
		t.Fatal("no LOGIN on the new connection")
	}
	// Logging in again, the status still says why the last one ended: the
	// missing PONG, not the read the close cut short.
	if st := c.Status(); st.Err == nil || !strings.Contains(st.Err.Error(), "no answer to a PING") {
		t.Errorf("status %+v, want the missing PONG as the error", st)
	}
}

// TestConnGoAwayInStatus: a connection the server ended with GOAWAY
// SHUTTING_DOWN and a close shows the GOAWAY in Status while the Conn
// logs in again, not only the end of the stream.
func TestConnGoAwayInStatus(t *testing.T) {
	fs := newFakeServer(t)
	c, fc := dialFake(t, fs, client.Options{}, func(fc *fakeConn) { fc.welcome(t) })
	g := protocol.GoAway{After: 0, Code: protocol.CodeShuttingDown}
	fc.write(t, g.Append(nil))
	fc.nc.Close()
	fs.next(t) // it logs in again
	if st := c.Status(); st.Err == nil || !strings.Contains(st.Err.Error(), "GOAWAY SHUTTING_DOWN") {
		t.Errorf("status %+v, want the GOAWAY as the error", st)
	}
}

// TestConnDropsTheDictionaryAfterDecompression: a compressed frame the
// client cannot inflate is answered with ERROR DECOMPRESSION, and the
// client logs in again offering no dictionary (PROTOCOL.md 10), so a
// server or a dictionary that keeps failing cannot block its mailbox; so
// does a server's ERROR DECOMPRESSION.
func TestConnDropsTheDictionaryAfterDecompression(t *testing.T) {
	fs := newFakeServer(t)
	for _, tc := range []struct {
		name  string
		frame []byte // what the server sends
		ours  bool   // the client answers with ERROR DECOMPRESSION
	}{
		{name: "a frame that does not inflate", frame: []byte{4, 0x87, 0xde, 0xad, 0xbe}, ours: true}, // a BATCH, flag C, that is not zstd
		{name: "the server's ERROR", frame: (&protocol.Error{Code: protocol.CodeDecompression}).Append(nil)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, fc := dialFake(t, fs, client.Options{Dict: protocol.DictV1}, func(fc *fakeConn) {
				if fc.login.Dict != protocol.DictV1 {
					t.Errorf("first LOGIN offers dictionary %d, want %d", fc.login.Dict, protocol.DictV1)
				}
				w := protocol.Welcome{Version: protocol.Version, User: 7, Time: uint64(time.Now().UnixMilli()), Ping: 600,
					Dict: protocol.DictV1, MaxFrame: protocol.MaxFrame, Window: 256}
				fc.write(t, w.Append(nil))
			})
			fc.write(t, tc.frame)
			if tc.ours {
				fc.expectError(t, protocol.CodeDecompression)
			}
			if again := fs.next(t); again.login.Dict != 0 {
				t.Fatalf("the LOGIN after DECOMPRESSION offers dictionary %d, want none", again.login.Dict)
			}
		})
	}
}

// TestConnBodyTooLargeFailsTheMessage: ERROR BODY_TOO_LARGE names no
// message; the Conn refuses its largest for good (a REFUSE from Recv) and
// logs in again, where the rest of the outbox goes and that one does not.
// Resent, it would close every connection for ever.
func TestConnBodyTooLargeFailsTheMessage(t *testing.T) {
	fs := newFakeServer(t)
	c, fc := dialFake(t, fs, client.Options{}, func(fc *fakeConn) { fc.welcome(t) })
	small, err := c.Send(9, false, []byte("small"))
	if err != nil {
		t.Fatal(err)
	}
	big, err := c.Send(9, false, make([]byte, 20_000))
	if err != nil {
		t.Fatal(err)
	}
	fc.send(t)
	if s := fc.send(t); s.MsgID != big {
		t.Fatalf("second SEND msg %d, want %d", s.MsgID, big)
	}
	r := tooLarge(t, c, fc)
	if r.MsgID != big || r.Code != protocol.CodeBodyTooLarge || r.RetryAfter != 0 {
		t.Fatalf("REFUSE %+v, want msg %d refused for good with BODY_TOO_LARGE", r, big)
	}
	again := fs.next(t)
	again.welcome(t)
	if s := again.send(t); s.MsgID != small || !s.Retry {
		t.Fatalf("first SEND after the login: msg %d retry %v, want %d with flag B", s.MsgID, s.Retry, small)
	}
	later, err := c.Send(9, false, []byte("later"))
	if err != nil {
		t.Fatal(err)
	}
	if s := again.send(t); s.MsgID != later {
		t.Fatalf("next SEND msg %d, want the new %d: the refused %d must not go again", s.MsgID, later, big)
	}
}

// TestConnBodyTooLargeFailsNoGroupRequest: ERROR BODY_TOO_LARGE with no
// message in the outbox, only a GROUP request, refuses nothing: the next
// event is the reconnect, and the request goes again after the login.
func TestConnBodyTooLargeFailsNoGroupRequest(t *testing.T) {
	fs := newFakeServer(t)
	c, fc := dialFake(t, fs, client.Options{}, func(fc *fakeConn) { fc.welcome(t) })
	id := c.NextMsgID()
	if err := c.Queue(client.Outgoing{MsgID: id, Op: protocol.GroupCreate, Members: []uint64{9}}); err != nil {
		t.Fatal(err)
	}
	fc.nextFrame(t)
	fc.write(t, (&protocol.Error{Code: protocol.CodeBodyTooLarge}).Append(nil))
	fc.nc.Close()
	again := fs.next(t)
	again.welcome(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if ev, err := c.Recv(ctx); err != nil {
		t.Fatal(err)
	} else if _, ok := ev.(*client.Reconnected); !ok {
		t.Fatalf("first event after BODY_TOO_LARGE: %#v, want the reconnect", ev)
	}
	var g protocol.Group
	if f := again.nextFrame(t); f.Type != protocol.TypeGroup || g.Decode(f) != nil || g.MsgID != id {
		t.Fatalf("after the login the client wrote %v (msg %d), want the GROUP request %d again", f.Type, g.MsgID, id)
	}
}

// tooLarge has fc answer ERROR BODY_TOO_LARGE and hang up, and returns
// the REFUSE c hands the app next.
func tooLarge(t *testing.T, c *client.Conn, fc *fakeConn) *protocol.Refuse {
	t.Helper()
	e := protocol.Error{Code: protocol.CodeBodyTooLarge, Reason: "SEND body over the limit"}
	fc.write(t, e.Append(nil))
	fc.nc.Close()
	return next[*protocol.Refuse](t, c, nil)
}

// TestConnBodyTooLargeFailsTheFirstOfEqualBodies: of two messages of the
// outbox equally large, ERROR BODY_TOO_LARGE fails the one with the lower
// msg_id, the one the server read first; the other goes again after the
// login, with flag B.
func TestConnBodyTooLargeFailsTheFirstOfEqualBodies(t *testing.T) {
	fs := newFakeServer(t)
	c, fc := dialFake(t, fs, client.Options{}, func(fc *fakeConn) { fc.welcome(t) })
	var ids []uint64
	for range 2 {
		id, err := c.Send(9, false, make([]byte, 20_000))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	fc.send(t)
	if r := tooLarge(t, c, fc); r.MsgID != ids[0] || r.Code != protocol.CodeBodyTooLarge {
		t.Fatalf("REFUSE %+v, want msg %d, the first of the two, refused for good", r, ids[0])
	}
	again := fs.next(t)
	again.welcome(t)
	if s := again.send(t); s.MsgID != ids[1] || !s.Retry {
		t.Fatalf("SEND after the login: msg %d retry %v, want %d with flag B", s.MsgID, s.Retry, ids[1])
	}
}

// TestConnBodyTooLargeSkipsAFailedMessage: a message refused for good
// (retry_after 0) has left the outbox, so a later ERROR BODY_TOO_LARGE
// fails the largest message still in it, not the larger one that failed
// before; otherwise the one over the limit would go again at every login.
func TestConnBodyTooLargeSkipsAFailedMessage(t *testing.T) {
	fs := newFakeServer(t)
	c, fc := dialFake(t, fs, client.Options{}, func(fc *fakeConn) { fc.welcome(t) })
	failed, err := c.Send(9, false, make([]byte, 20_000))
	if err != nil {
		t.Fatal(err)
	}
	fc.send(t)
	fc.write(t, (&protocol.Refuse{MsgID: failed, Code: protocol.CodeBadRecipient}).Append(nil))
	next[*protocol.Refuse](t, c, func(r *protocol.Refuse) bool { return r.MsgID == failed })
	big, err := c.Send(9, false, make([]byte, 19_000))
	if err != nil {
		t.Fatal(err)
	}
	fc.send(t)
	if r := tooLarge(t, c, fc); r.MsgID != big || r.Code != protocol.CodeBodyTooLarge {
		t.Fatalf("REFUSE %+v, want msg %d, the largest left in the outbox, refused for good", r, big)
	}
	if n := c.Pending(); n != 0 {
		t.Fatalf("%d pending after both messages failed, want 0", n)
	}
}

// TestConnBodyTooLargeSkipsAcceptedMessages: messages an ACCEPT covered,
// each id of its run, have left the outbox, so ERROR BODY_TOO_LARGE fails
// the largest message still waiting, not a larger one already delivered.
func TestConnBodyTooLargeSkipsAcceptedMessages(t *testing.T) {
	fs := newFakeServer(t)
	c, fc := dialFake(t, fs, client.Options{}, func(fc *fakeConn) { fc.welcome(t) })
	var ids []uint64
	for range 2 {
		id, err := c.Send(9, false, make([]byte, 20_000))
		if err != nil {
			t.Fatal(err)
		}
		fc.send(t)
		ids = append(ids, id)
	}
	fc.write(t, (&protocol.Accept{MsgID: ids[0], More: 1}).Append(nil))
	next[*protocol.Accept](t, c, nil)
	waiting, err := c.Send(9, false, make([]byte, 19_000))
	if err != nil {
		t.Fatal(err)
	}
	fc.send(t)
	if r := tooLarge(t, c, fc); r.MsgID != waiting {
		t.Fatalf("REFUSE of msg %d, want %d, the one message not accepted", r.MsgID, waiting)
	}
}

// TestConnResendsAfterRetryAfter: a message refused with retry_after goes
// again on its own, with flag B, no sooner than retry_after after the
// REFUSE (PROTOCOL.md 8.5), and not only at the next keepalive.
func TestConnResendsAfterRetryAfter(t *testing.T) {
	fs := newFakeServer(t)
	c, fc := dialFake(t, fs, client.Options{}, func(fc *fakeConn) { fc.welcome(t) })
	id, err := c.Send(9, false, []byte("hello"))
	if err != nil {
		t.Fatal(err)
	}
	fc.send(t)
	const retryAfter = 50 * time.Millisecond
	refused := time.Now()
	fc.write(t, (&protocol.Refuse{MsgID: id, Code: protocol.CodeStorage, RetryAfter: uint32(retryAfter / time.Millisecond)}).Append(nil))
	s := fc.send(t)
	if waited := time.Since(refused); waited < retryAfter {
		t.Fatalf("resent after %v, sooner than retry_after %v", waited, retryAfter)
	}
	if s.MsgID != id || !s.Retry || string(s.Body) != "hello" {
		t.Fatalf("resent msg %d retry %v body %q, want %d with flag B and the same body", s.MsgID, s.Retry, s.Body, id)
	}
}

// TestConnRestoresABodyOverTheDefaultLimit: a body queued under a plain
// server's WELCOME (up to 65,536 bytes) is restored by the next Dial,
// although a default server's limit is lower: the server refuses it, for
// good, and the Dial stands.
func TestConnRestoresABodyOverTheDefaultLimit(t *testing.T) {
	fs := newFakeServer(t)
	big := client.Outgoing{MsgID: 5, To: 9, Body: make([]byte, client.MaxNoiseBody+500)}
	c, fc := dialFake(t, fs, client.Options{Outbox: []client.Outgoing{big}}, func(fc *fakeConn) { fc.welcome(t) })
	if s := fc.send(t); s.MsgID != big.MsgID || !s.Retry || len(s.Body) != len(big.Body) {
		t.Fatalf("SEND msg %d retry %v of %d bytes, want the restored %d with flag B", s.MsgID, s.Retry, len(s.Body), big.MsgID)
	}
	if r := tooLarge(t, c, fc); r.MsgID != big.MsgID || r.Code != protocol.CodeBodyTooLarge {
		t.Fatalf("REFUSE %+v, want msg %d refused for good", r, big.MsgID)
	}
}

// TestConnStalledSocketHoldsNoCaller: a server that takes nothing holds
// the goroutine writing to it, for up to WriteTimeout, but not Send,
// Status, Pending or Close: what Send makes waits in the queue, and Close
// ends the stalled write.
func TestConnStalledSocketHoldsNoCaller(t *testing.T) {
	fs := newFakeServer(t)
	c, _ := dialFake(t, fs, client.Options{WriteTimeout: time.Hour}, func(fc *fakeConn) { fc.welcome(t) })
	// The fake server never reads again. 400 SENDs of 60 KiB are 24 MiB,
	// several times what loopback's socket buffers hold.
	const n = 400
	body := make([]byte, 60<<10)
	sent := make(chan error, 1)
	go func() {
		for range n {
			if _, err := c.Send(9, false, body); err != nil {
				sent <- err
				return
			}
		}
		sent <- nil
	}()
	within := func(what string, ch <-chan error) {
		t.Helper()
		select {
		case err := <-ch:
			if err != nil {
				t.Fatalf("%s: %v", what, err)
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("%s blocked behind a socket that takes nothing", what)
		}
	}
	within("Send", sent)
	status := make(chan error, 1)
	go func() {
		if st, p := c.Status(), c.Pending(); st.State != client.StateCaughtUp || p != n {
			status <- fmt.Errorf("state %v, %d pending; want caught up, %d", st.State, p, n)
			return
		}
		status <- nil
	}()
	within("Status and Pending", status)
	closed := make(chan error, 1)
	go func() { closed <- c.Close() }()
	within("Close", closed)
}

// TestConnFullEventsIsNotDead: while the application leaves Events full,
// the reader waits and the server's PONGs wait unread behind the entries;
// the Conn keeps the connection (it went on pinging past DeadAfter) and
// hands every entry over once the application reads.
func TestConnFullEventsIsNotDead(t *testing.T) {
	fs := newFakeServer(t)
	c, fc := dialFake(t, fs, client.Options{Events: 2, DeadAfter: 300 * time.Millisecond}, func(fc *fakeConn) {
		w := protocol.Welcome{Version: protocol.Version, User: 7, Time: uint64(time.Now().UnixMilli()), Ping: 1,
			MaxFrame: protocol.MaxFrame, Window: 256}
		fc.write(t, w.Append(nil))
	})
	const entries = 5
	var b []byte
	for seq := uint64(1); seq <= entries; seq++ {
		d := protocol.Deliver{Seq: seq, From: 3, MsgID: seq, Body: []byte("hi")}
		b = d.Append(b)
	}
	fc.write(t, b)
	// Three PINGs on this connection take over 2 s, far past DeadAfter
	// after the first, with nothing read by the client meanwhile.
	fc.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	for pings := 0; pings < 3; {
		f, err := fc.fr.Next()
		if err != nil {
			t.Fatalf("after %d PINGs the client closed the connection: %v", pings, err)
		}
		if f.Type == protocol.TypePing {
			pings++
			fc.write(t, protocol.AppendPong(nil))
		}
	}
	for seq := uint64(1); seq <= entries; seq++ {
		if d := next[*protocol.Deliver](t, c, nil); d.Seq != seq {
			t.Fatalf("entry seq %d, want %d", d.Seq, seq)
		}
	}
	if st := c.Status(); st.State != client.StateCaughtUp || st.Err != nil {
		t.Fatalf("status %+v, want caught up with no error", st)
	}
}

// TestConnPingsOncePerInterval: on an idle connection the Conn writes a
// PING once per interval WELCOME granted (1 s here), each answered PING
// followed by a quiet interval, not one per wake of its timers.
func TestConnPingsOncePerInterval(t *testing.T) {
	fs := newFakeServer(t)
	_, fc := dialFake(t, fs, client.Options{}, func(fc *fakeConn) {
		w := protocol.Welcome{Version: protocol.Version, User: 7, Time: uint64(time.Now().UnixMilli()), Ping: 1,
			MaxFrame: protocol.MaxFrame, Window: 256}
		fc.write(t, w.Append(nil))
	})
	var pings []time.Time
	fc.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	for len(pings) < 2 {
		f, err := fc.fr.Next()
		if err != nil {
			t.Fatalf("after %d PINGs: %v", len(pings), err)
		}
		if f.Type == protocol.TypePing {
			pings = append(pings, time.Now())
			fc.write(t, protocol.AppendPong(nil))
		}
	}
	if gap := pings[1].Sub(pings[0]); gap < 900*time.Millisecond {
		t.Fatalf("PINGs %v apart, want one a second", gap)
	}
}

// TestConnCloseEndsItsGoroutines: once Close returns, the goroutines of the
// Conn (reader, timers, writer) end; none is left behind to hold its
// memory.
func TestConnCloseEndsItsGoroutines(t *testing.T) {
	fs := newFakeServer(t)
	c, _ := dialFake(t, fs, client.Options{}, func(fc *fakeConn) { fc.welcome(t) })
	c.Close()
	var left string
	testutil.Eventually(t, 5*time.Second, "the Conn's goroutines to end", func() bool {
		buf := make([]byte, 1<<20)
		left = string(buf[:runtime.Stack(buf, true)])
		return !strings.Contains(left, "switchboard/client.(*Conn)")
	}, func() string { return left })
}

// TestConnCloseWithEventsFull: Close returns while the application leaves
// Events full and the Conn waits for room in it, whether to hand over an
// entry, the Reconnected of a new connection, or the REFUSE of a message
// the server found too large.
func TestConnCloseWithEventsFull(t *testing.T) {
	fs := newFakeServer(t)
	deliver := func(seqs ...uint64) []byte {
		var b []byte
		for _, seq := range seqs {
			b = (&protocol.Deliver{Seq: seq, From: 3, MsgID: seq, Body: []byte("hi")}).Append(b)
		}
		return b
	}
	for _, tc := range []struct {
		name string
		fill func(t *testing.T, c *client.Conn, fc *fakeConn) // leaves the Conn waiting for room in Events
	}{
		{name: "an entry", fill: func(t *testing.T, c *client.Conn, fc *fakeConn) {
			fc.write(t, deliver(1, 2, 3))
			next[*protocol.Deliver](t, c, nil) // 2 takes its place, and 3 waits
		}},
		{name: "the Reconnected", fill: func(t *testing.T, c *client.Conn, fc *fakeConn) {
			fc.write(t, deliver(1))
			fc.nc.Close()
			fs.next(t).welcome(t)
			waitState(t, c, client.StateCaughtUp) // the LOGIN came after the drop: this is the new WELCOME
		}},
		{name: "a REFUSE for BODY_TOO_LARGE", fill: func(t *testing.T, c *client.Conn, fc *fakeConn) {
			fc.write(t, deliver(1))
			if _, err := c.Send(9, false, []byte("large")); err != nil {
				t.Fatal(err)
			}
			fc.send(t)
			fc.write(t, (&protocol.Error{Code: protocol.CodeBodyTooLarge}).Append(nil))
			testutil.Eventually(t, 10*time.Second, "the message failed", func() bool { return c.Pending() == 0 })
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, fc := dialFake(t, fs, client.Options{Events: 1}, func(fc *fakeConn) { fc.welcome(t) })
			tc.fill(t, c, fc)
			closesWithin(t, c, 10*time.Second, "Close waited for the application to read Events")
		})
	}
}

// TestConnEndsOnReplaced: ERROR REPLACED on a live connection ends the
// session (PROTOCOL.md 10): Recv returns it wrapped in ErrClosed and the
// Conn does not log in again, which would evict the newer session in turn.
// Send then returns the same error rather than queue a message that would
// never go.
func TestConnEndsOnReplaced(t *testing.T) {
	fs := newFakeServer(t)
	c, fc := dialFake(t, fs, client.Options{}, func(fc *fakeConn) { fc.welcome(t) })
	fc.write(t, (&protocol.Error{Code: protocol.CodeReplaced, Reason: "a newer login"}).Append(nil))
	fc.nc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := c.Recv(ctx)
	var perr *protocol.Error
	if !errors.Is(err, client.ErrClosed) || !errors.As(err, &perr) || perr.Code != protocol.CodeReplaced {
		t.Fatalf("Recv: %v, want ErrClosed with REPLACED", err)
	}
	if id, err := c.Send(9, false, []byte("too late")); !errors.Is(err, client.ErrClosed) || !errors.As(err, &perr) {
		t.Fatalf("Send after REPLACED: msg %d, %v, want ErrClosed with REPLACED", id, err)
	}
	// Recv returned the cause: the Conn is done, and a second LOGIN would
	// already be here.
	select {
	case <-fs.conns:
		t.Fatal("a LOGIN after REPLACED")
	default:
	}
}

// TestConnPingsAfterAReconnect: the keepalive starts again with each
// WELCOME: an idle Conn pings on the connection a reconnect made, within
// its interval, before the server takes it for idle.
func TestConnPingsAfterAReconnect(t *testing.T) {
	fs := newFakeServer(t)
	_, fc := dialFake(t, fs, client.Options{}, func(fc *fakeConn) { fc.welcome(t) })
	fc.nc.Close()
	again := fs.next(t)
	w := protocol.Welcome{Version: protocol.Version, User: 7, Time: uint64(time.Now().UnixMilli()), Ping: 1,
		MaxFrame: protocol.MaxFrame, Window: 256}
	again.write(t, w.Append(nil))
	again.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		f, err := again.fr.Next()
		if err != nil {
			t.Fatalf("no PING on the new connection: %v", err)
		}
		if f.Type == protocol.TypePing {
			return
		}
	}
}
