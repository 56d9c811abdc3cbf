package noise_test

import (
	"bytes"
	"encoding/hex"
	"flag"
	"fmt"
	"os"
	"strings"
	"testing"

	"switchboard/noise"
	"switchboard/protocol"
)

var update = flag.Bool("update", false, "rewrite testdata/vectors.txt from this build")

// fixedKey returns the key pair whose private key is 32 bytes of b.
func fixedKey(t *testing.T, b byte) noise.Keypair {
	t.Helper()
	k, err := noise.KeypairFrom([32]byte(bytes.Repeat([]byte{b}, 32)))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestVectors makes every handshake with fixed keys (static and ephemeral)
// and the first transport messages each way, writes them as
// testdata/vectors.txt (PROTOCOL.md, "Noise transport": another
// implementation checks itself against it byte by byte), and fails when
// this build makes other bytes than the file holds.
func TestVectors(t *testing.T) {
	serverKey, oldKey := fixedKey(t, 0x01), fixedKey(t, 0x02)
	device := fixedKey(t, 0x03)
	serverE, clientE := bytes.Repeat([]byte{0x04}, 32), bytes.Repeat([]byte{0x05}, 32)
	login := (&protocol.Login{Token: []byte("token bound to the device key"), Ack: 0}).Append(nil)

	var out strings.Builder
	out.WriteString(`# Switchboard Noise transport vectors (PROTOCOL.md, "Noise transport").
# Cipher suite 25519_ChaChaPoly_SHA256. Every value is hex. Private keys
# are fixed (32 times one byte); a side's ephemeral private key is the
# 32 bytes listed, used for the first ephemeral key it makes. "c->s" and
# "s->c" lines are whole framed handshake messages (kind, 2-byte length,
# Noise message); "transport" lines give the frames sealed and the framed
# transport message (2-byte length, ciphertext and tag) on the wire, the
# sender's n-th message using nonce n.
`)
	for _, v := range []struct {
		name      string
		known     []byte
		keys      []noise.Keypair
		transport byte
	}{
		{"XX: first contact", nil, []noise.Keypair{serverKey}, protocol.TransportNoiseXX},
		{"IK: the client knows the server's key", serverKey.Public[:], []noise.Keypair{serverKey}, protocol.TransportNoiseIK},
		{"XXfallback: the client knew an older key", oldKey.Public[:], []noise.Keypair{serverKey}, protocol.TransportNoiseIK},
	} {
		fmt.Fprintf(&out, "\n[%s]\n", v.name)
		preface := protocol.AppendPreface(nil, protocol.Version, v.transport)
		line := func(k string, b []byte) { fmt.Fprintf(&out, "%s %s\n", k, hex.EncodeToString(b)) }
		line("preface", preface)
		line("server_static_private", v.keys[0].Private[:])
		line("server_static_public", v.keys[0].Public[:])
		if v.known != nil {
			line("client_knows_server_public", v.known)
		}
		line("server_ephemeral_private", serverE)
		line("client_static_private", device.Private[:])
		line("client_static_public", device.Public[:])
		line("client_ephemeral_private", clientE)
		line("login", login)

		ccfg := noise.ClientConfig{Static: device, Server: v.known, Random: bytes.NewReader(clientE)}
		c, msg, err := noise.NewClient(ccfg, preface, login)
		if err != nil {
			t.Fatal(err)
		}
		s, err := noise.NewServer(noise.ServerConfig{Keys: v.keys, Random: bytes.NewReader(serverE)}, preface)
		if err != nil {
			t.Fatal(err)
		}
		for toServer := true; msg != nil; toServer = !toServer {
			kind, body, _, err := noise.ReadHandshake(msg)
			if err != nil {
				t.Fatal(err)
			}
			if toServer {
				line("c->s", msg)
				msg, err = s.Step(kind, body)
			} else {
				line("s->c", msg)
				msg, err = c.Step(kind, body)
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		cr, sr := c.Result(), s.Result()
		fmt.Fprintf(&out, "pattern %s\n", sr.Pattern)
		if !bytes.Equal(sr.Login, login) || cr.Peer != v.keys[0].Public || sr.Peer != device.Public {
			t.Fatalf("%s: the handshake did not deliver the login or the keys", v.name)
		}
		// What a server with the defaults sends: window 256, max_frame
		// 65,455 (gateway.NoiseMaxFrame).
		welcome := (&protocol.Welcome{Version: protocol.Version, User: 42, Time: 1796342400000, Ping: 60, Window: 256, MaxFrame: noise.MaxPlaintext - 64}).Append(nil)
		for _, tr := range []struct {
			dir      string
			from, to *noise.Session
			frames   []byte
		}{
			{"s->c", sr.Session, cr.Session, welcome},
			{"c->s", cr.Session, sr.Session, protocol.AppendPing(nil)},
			{"s->c", sr.Session, cr.Session, protocol.AppendPong(nil)},
		} {
			wire, err := tr.from.Seal(nil, tr.frames)
			if err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(&out, "transport %s %s : %s\n", tr.dir, hex.EncodeToString(tr.frames), hex.EncodeToString(wire))
			if got, err := tr.to.Open(append([]byte(nil), wire[noise.LengthLen:]...)); err != nil || !bytes.Equal(got, tr.frames) {
				t.Fatalf("%s: transport %s did not open: %v", v.name, tr.dir, err)
			}
		}
	}
	const file = "testdata/vectors.txt"
	if *update {
		if err := os.WriteFile(file, []byte(out.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(file)
	if err != nil {
		t.Fatalf("%v (go test ./noise -run TestVectors -update writes it)", err)
	}
	if out.String() != string(want) {
		t.Fatalf("this build makes other bytes than %s:\n%s", file, out.String())
	}
}
