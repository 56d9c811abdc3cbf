package noise_test

import (
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"switchboard/noise"
	"switchboard/protocol"
)

// dialAgainst runs noise.Dial (XX) against a server that reads the
// client's first message and answers with answer, then hangs up if hangUp
// is set; it returns Dial's error.
func dialAgainst(t *testing.T, answer []byte, hangUp bool) error {
	t.Helper()
	cc, sc := net.Pipe()
	defer cc.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 512)
		if _, err := sc.Read(buf); err != nil {
			return
		}
		sc.Write(answer)
		if hangUp {
			sc.Close()
			return
		}
		io.Copy(io.Discard, sc) // until the client closes
	}()
	defer func() { cc.Close(); sc.Close(); <-done }()
	cc.SetDeadline(time.Now().Add(5 * time.Second))
	c, _, err := noise.Dial(cc, noise.ClientConfig{Static: keypair(t)}, protocol.Version, []byte("login"))
	if err == nil {
		c.Close()
		t.Fatal("Dial succeeded against a server that refused")
	}
	return err
}

// TestDialRefused: what a client's Dial makes of a server that does not
// complete the handshake. A refusal (ERROR or GOAWAY, inside a Noise
// plain message or as a bare frame from a server without Noise) is a
// RefusedError that names the code, the reason or the delay; anything
// else is an error saying what came, never a hang or a success.
func TestDialRefused(t *testing.T) {
	plain := func(frame []byte) []byte {
		return append([]byte{noise.KindPlain, byte(len(frame) >> 8), byte(len(frame))}, frame...)
	}
	errFrame := (&protocol.Error{Code: protocol.CodeBadToken, Reason: "the token does not verify"}).Append(nil)
	goAway := (&protocol.GoAway{Code: protocol.CodeRetryLater, After: 750}).Append(nil)
	tests := []struct {
		name    string
		answer  []byte
		hangUp  bool
		refused bool   // a *RefusedError
		want    string // in the error's text
	}{
		{"ERROR in a plain message", plain(errFrame), false, true, "the server refused the handshake: ERROR BAD_TOKEN: the token does not verify"},
		{"GOAWAY in a plain message", plain(goAway), false, true, "the server refused the handshake: GOAWAY RETRY_LATER after 750 ms"},
		{"a bare GOAWAY, from a server without Noise", goAway, false, true, "GOAWAY RETRY_LATER after 750 ms"},
		{"a bare ERROR cut short", errFrame[:len(errFrame)-3], true, false, "the server answered with a plain frame, cut"},
		{"another frame in a plain message", plain(protocol.AppendPing(nil)), false, true, "refused the handshake with a PING frame"},
		{"an ERROR that does not decode", plain(protocol.AppendFrame(nil, protocol.TypeError, 0, nil)), false, true, "refused the handshake with a ERROR frame"},
		{"a plain message that is not a frame", plain([]byte{0}), false, true, "noise: the server refused the handshake"},
		{"neither a handshake message nor a frame", []byte{0x00, 0x01}, false, false, "the server answered with 0x0, neither a handshake message nor a frame"},
		{"a handshake message over the limit", []byte{noise.KindXX2, 0xff, 0xff}, false, false, "handshake message of 65535 bytes"},
		{"a handshake message cut", []byte{noise.KindXX2, 0, 80, 1, 2, 3}, true, false, "EOF"},
		{"hung up at once", nil, true, false, "EOF"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := dialAgainst(t, tc.answer, tc.hangUp)
			var re *noise.RefusedError
			if errors.As(err, &re) != tc.refused {
				t.Errorf("error %T %v: refused %v, want %v", err, err, !tc.refused, tc.refused)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q, want it to say %q", err, tc.want)
			}
		})
	}
}

// TestRefusedAfterLastMessage: a server that refuses the client's XX 3
// answers with a KindPlain message where its first transport message would
// be. Dial has finished by then; the Conn's first Read returns the refusal
// as a *RefusedError carrying the GOAWAY, not bytes read as a transport
// message's length.
func TestRefusedAfterLastMessage(t *testing.T) {
	server := keypair(t)
	cc, sc := net.Pipe()
	defer cc.Close()
	goAway := (&protocol.GoAway{Code: protocol.CodeRetryLater, After: 1000}).Append(nil)
	done := make(chan error, 1)
	go func() {
		defer sc.Close()
		done <- func() error {
			sc.SetDeadline(time.Now().Add(5 * time.Second))
			preface := make([]byte, protocol.PrefaceLen)
			if _, err := io.ReadFull(sc, preface); err != nil {
				return err
			}
			hs, err := noise.NewServer(noise.ServerConfig{Keys: []noise.Keypair{server}}, preface)
			if err != nil {
				return err
			}
			msg, err := readHandshakeMsg(sc)
			if err != nil {
				return err
			}
			reply, err := hs.Step(msg[0], msg[noise.HeaderLen:])
			if err != nil {
				return err
			}
			if _, err := sc.Write(reply); err != nil {
				return err
			}
			if _, err := readHandshakeMsg(sc); err != nil { // XX 3, refused unread
				return err
			}
			_, err = sc.Write(append([]byte{noise.KindPlain, 0, byte(len(goAway))}, goAway...))
			return err
		}()
	}()
	cc.SetDeadline(time.Now().Add(5 * time.Second))
	c, _, err := noise.Dial(cc, noise.ClientConfig{Static: keypair(t)}, protocol.Version, []byte("login"))
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	_, err = c.Read(make([]byte, 64))
	var re *noise.RefusedError
	if !errors.As(err, &re) || !strings.Contains(err.Error(), "GOAWAY RETRY_LATER after 1000 ms") {
		t.Fatalf("the first Read: %v, want the refusal with GOAWAY RETRY_LATER after 1000 ms", err)
	}
	if err := <-done; err != nil {
		t.Fatalf("server: %v", err)
	}
}

// readHandshakeMsg reads one framed handshake message, header included.
func readHandshakeMsg(r io.Reader) ([]byte, error) {
	hdr := make([]byte, noise.HeaderLen)
	if _, err := io.ReadFull(r, hdr); err != nil {
		return nil, err
	}
	msg := make([]byte, int(hdr[1])<<8|int(hdr[2]))
	if _, err := io.ReadFull(r, msg); err != nil {
		return nil, err
	}
	return append(hdr, msg...), nil
}

// TestFirstMessageShort: a session's first transport message holds at
// most MaxFirstPlaintext bytes of frames, so its length never begins with
// KindPlain; the frames past it go in the next message, and later
// messages hold up to MaxPlaintext.
func TestFirstMessageShort(t *testing.T) {
	c, s := handshake(t, noise.ClientConfig{Static: keypair(t)}, noise.ServerConfig{Keys: []noise.Keypair{keypair(t)}}, []byte("login"))
	frame := protocol.AppendFrame(nil, protocol.TypeDeliver, 0, make([]byte, 1000))
	var frames []byte
	for len(frames)+len(frame) <= noise.MaxPlaintext {
		frames = append(frames, frame...)
	}
	sizes := func(wire []byte) []int {
		var out []int
		for len(wire) > 0 {
			ct, n, err := noise.ReadTransport(wire)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := c.Session.Open(ct); err != nil {
				t.Fatal(err)
			}
			out = append(out, len(ct)-noise.TagLen)
			wire = wire[n:]
		}
		return out
	}
	wire, err := s.Session.SealFrames(nil, frames)
	if err != nil {
		t.Fatal(err)
	}
	if wire[0] >= noise.KindPlain {
		t.Errorf("the first message's length begins with %#x", wire[0])
	}
	perFrame := len(frame)
	if got := sizes(wire); len(got) != 2 || got[0] != noise.MaxFirstPlaintext/perFrame*perFrame || got[0]+got[1] != len(frames) {
		t.Fatalf("first messages of %v bytes, want %d then the rest of %d", got, noise.MaxFirstPlaintext/perFrame*perFrame, len(frames))
	}
	wire, err = s.Session.SealFrames(nil, frames)
	if err != nil {
		t.Fatal(err)
	}
	if got := sizes(wire); len(got) != 1 || got[0] != len(frames) {
		t.Fatalf("a later message of %v bytes, want one of %d", got, len(frames))
	}
}
