package gateway_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"
	"time"

	"switchboard/gateway"
	"switchboard/protocol"
)

// TestLoginFrameLimit: before login a frame over 1 KiB (header byte
// included) is refused from its length prefix, before its payload arrives,
// with FRAME_TOO_LARGE; a frame of exactly 1 KiB is read (and, not being a
// valid LOGIN, refused as PROTOCOL).
func TestLoginFrameLimit(t *testing.T) {
	ts := startServer(t, serverOptions{})
	preface := protocol.AppendPreface(nil, protocol.Version, protocol.TransportPlain)
	header := func(length int) []byte {
		b := binary.AppendUvarint(bytes.Clone(preface), uint64(length))
		return append(b, byte(protocol.TypeLogin))
	}
	tests := []struct {
		name  string
		write []byte
		want  protocol.Code
	}{
		{name: "1025 bytes, only the header sent", write: header(1025), want: protocol.CodeFrameTooLarge},
		{name: "66 KB, half sent", write: append(header(66_000), make([]byte, 30_000)...), want: protocol.CodeFrameTooLarge},
		{name: "1024 bytes, whole", write: append(header(1024), make([]byte, 1023)...), want: protocol.CodeProtocol},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := ts.rawFor(t)
			r.write(tt.write)
			// Well before the partial-frame and handshake timeouts (10 s).
			if got := r.expectClose(3 * time.Second); got != tt.want {
				t.Fatalf("closed with %v, want %v", got, tt.want)
			}
		})
	}
	ts.roundTrip(t, 1, 2)
}

// TestRestartOnTheSamePort: a server stopped while clients were connected
// leaves its side of their connections in TIME_WAIT; a new server binds the
// same port at once, and a second server beside a running one is still
// refused with ErrAddrInUse.
func TestRestartOnTheSamePort(t *testing.T) {
	first := startServer(t, serverOptions{})
	for user := uint64(1); user <= 4; user++ {
		c := first.Dial(user, protocol.ClientOptions{})
		if _, err := c.Send(user%4+1, []byte("hello")); err != nil {
			t.Fatal(err)
		}
	}
	addr := first.Addr
	if err := first.Stop(); err != nil {
		t.Fatal(err)
	}
	second := startServer(t, serverOptions{gw: func(c *gateway.Config) { c.Addr = addr }})
	second.roundTrip(t, 5, 6)
	if err := startServerNoRun(t, addr).Run(); !errors.Is(err, gateway.ErrAddrInUse) {
		t.Fatalf("Run beside a running server: %v, want ErrAddrInUse", err)
	}
}
