package protocol

import (
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

// A fake server for the client's tests: it speaks the protocol by hand with
// the codec, one step at a time, on 127.0.0.1:0.

// clientWait bounds every wait of a client test, so a bug fails the test
// instead of hanging it.
const clientWait = 5 * time.Second

func clientCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), clientWait)
	t.Cleanup(cancel)
	return ctx
}

type clientFake struct {
	t     *testing.T
	ln    net.Listener
	conns chan net.Conn // accepted connections; sent by the accept loop, received by accept
}

func newClientFake(t *testing.T) *clientFake {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &clientFake{t: t, ln: ln, conns: make(chan net.Conn, 4)}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.conns <- c
		}
	}()
	return s
}

func (s *clientFake) addr() string { return s.ln.Addr().String() }

// accept returns the next connection.
func (s *clientFake) accept() *clientFakeConn {
	s.t.Helper()
	select {
	case c := <-s.conns:
		s.t.Cleanup(func() { c.Close() })
		return &clientFakeConn{t: s.t, c: c}
	case <-time.After(clientWait):
		s.t.Fatal("fake server: no connection")
		return nil
	}
}

// dial starts Dial in a goroutine and returns the server's side of the
// connection and a channel with Dial's result.
func (s *clientFake) dial(opts ClientOptions) (*clientFakeConn, <-chan clientDialResult) {
	s.t.Helper()
	res := make(chan clientDialResult, 1)
	go func() {
		c, err := Dial(context.Background(), s.addr(), opts)
		res <- clientDialResult{c, err}
	}()
	return s.accept(), res
}

type clientDialResult struct {
	c   *Client
	err error
}

func (r clientDialResult) client(t *testing.T) *Client {
	t.Helper()
	if r.err != nil {
		t.Fatalf("Dial: %v", r.err)
	}
	t.Cleanup(func() { r.c.Close() })
	return r.c
}

// wait returns the result of dial.
func waitDial(t *testing.T, res <-chan clientDialResult) clientDialResult {
	t.Helper()
	select {
	case r := <-res:
		return r
	case <-time.After(clientWait):
		t.Fatal("Dial did not return")
		return clientDialResult{}
	}
}

// login reads the preface and LOGIN and answers with w (and extra frames in
// the same write), returning the logged-in client.
func (s *clientFake) login(opts ClientOptions, w Welcome, extra ...[]byte) (*Client, *clientFakeConn) {
	s.t.Helper()
	fc, res := s.dial(opts)
	fc.readN(PrefaceLen)
	fc.frame(TypeLogin)
	out := w.Append(nil)
	for _, b := range extra {
		out = append(out, b...)
	}
	fc.write(out)
	return waitDial(s.t, res).client(s.t), fc
}

// clientFakeConn is the server's side of one connection.
type clientFakeConn struct {
	t   *testing.T
	c   net.Conn
	buf []byte // read and not yet consumed
}

// fill reads more bytes, failing the test on an error or after clientWait.
func (fc *clientFakeConn) fill() {
	fc.t.Helper()
	fc.c.SetReadDeadline(time.Now().Add(clientWait))
	var b [4096]byte
	n, err := fc.c.Read(b[:])
	if n == 0 {
		fc.t.Fatalf("fake server read: %v", err)
	}
	fc.buf = append(fc.buf, b[:n]...)
}

// readN returns the next n bytes the client wrote.
func (fc *clientFakeConn) readN(n int) []byte {
	fc.t.Helper()
	for len(fc.buf) < n {
		fc.fill()
	}
	b := append([]byte(nil), fc.buf[:n]...)
	fc.buf = fc.buf[n:]
	return b
}

// frame returns the next frame the client wrote, which must be of type t,
// and its encoding.
func (fc *clientFakeConn) frame(t Type) (Frame, []byte) {
	fc.t.Helper()
	for {
		f, n, err := ReadFrame(fc.buf, MaxFrame)
		if err == nil {
			if f.Type != t {
				fc.t.Fatalf("fake server read %v, want %v", f.Type, t)
			}
			raw := append([]byte(nil), fc.buf[:n]...)
			fc.buf = fc.buf[n:]
			f.Payload = raw[len(raw)-len(f.Payload):]
			return f, raw
		}
		if err != ErrIncomplete {
			fc.t.Fatalf("fake server read frame: %v", err)
		}
		fc.fill()
	}
}

// expectEOF asserts the client closed the connection with nothing more written.
func (fc *clientFakeConn) expectEOF() {
	fc.t.Helper()
	fc.c.SetReadDeadline(time.Now().Add(clientWait))
	n, err := fc.c.Read(make([]byte, 64))
	if n != 0 || len(fc.buf) != 0 || !errors.Is(err, io.EOF) {
		fc.t.Fatalf("fake server: want EOF, got %d bytes (%d buffered), %v", n, len(fc.buf), err)
	}
}

func (fc *clientFakeConn) write(b []byte) {
	fc.t.Helper()
	fc.c.SetWriteDeadline(time.Now().Add(clientWait))
	if _, err := fc.c.Write(b); err != nil {
		fc.t.Fatalf("fake server write: %v", err)
	}
}

// reverseInflater is a fake inflater: a "compressed" payload is the reversed one.
type reverseInflater struct{ t *testing.T }

func (r reverseInflater) Inflate(f Frame, dst []byte, max int) (Frame, error) {
	if max != MaxServerFrame {
		r.t.Errorf("Inflate max = %d, want MaxServerFrame", max)
	}
	if 1+len(f.Payload) > max {
		return Frame{}, ErrDecompress
	}
	for i := len(f.Payload) - 1; i >= 0; i-- {
		dst = append(dst, f.Payload[i])
	}
	return Frame{Type: f.Type, Flags: f.Flags &^ FlagCompressed, Payload: dst}, nil
}
