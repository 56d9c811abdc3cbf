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
