package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"switchboard/noise"
	"switchboard/token"
)

// TestChatToken: chat mints, at each call, a token for its user that the
// data folder's keys verify, as switchboard token would; --token is sent as
// its hex-decoded bytes.
func TestChatToken(t *testing.T) {
	dir := t.TempDir()
	keys, _, err := token.LoadOrCreate(filepath.Join(dir, token.FileName))
	if err != nil {
		t.Fatal(err)
	}
	mint, err := chatToken("", dir, 42, nil)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := mint(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	c, err := keys.Verify(tok, time.Now())
	if err != nil || c.User != 42 || c.Device != 1 {
		t.Fatalf("minted token: claims %+v, %v; want user 42, device 1, valid", c, err)
	}
	given, err := chatToken(hex.EncodeToString(tok), dir, 42, nil)
	if err != nil {
		t.Fatal(err)
	}
	if again, _ := given(context.Background()); !bytes.Equal(again, tok) {
		t.Fatalf("--token %x gave % x", tok, again)
	}
	// A token of another user would file that user's messages in this
	// one's state; a bound one cannot log in over plain.
	for _, tc := range []struct {
		tok  []byte
		want string
	}{
		{[]byte{0x0a, 0x0b}, "--token: "},
		{token.Mint(keys[1], token.Claims{KeyID: 1, User: 4, Device: 1, Expiry: time.Now().Add(time.Hour)}), "--token logs in as user 4, not --user 42"},
		{token.MintBound(keys[1], token.Claims{KeyID: 1, User: 42, Device: 1, Expiry: time.Now().Add(time.Hour)}, bytes.Repeat([]byte{3}, 32)), "logs in over Noise only"},
	} {
		if _, err := chatToken(hex.EncodeToString(tc.tok), dir, 42, nil); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("--token %x: %v, want %q", tc.tok, err, tc.want)
		}
	}
	if _, err := chatToken("", t.TempDir(), 42, nil); err == nil || !strings.Contains(err.Error(), "make run") {
		t.Fatalf("no keys file: %v, want an error that says to start the server", err)
	}
}

// TestChatUsageExitsTwo: chat without --user, or with a --token that is not
// hex, exits 2 naming the problem, before connecting to anything.
func TestChatUsageExitsTwo(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"chat"}, "--user is required"},
		{[]string{"chat", "--user", "1", "--token", "xyz"}, "--token: not hex"},
		{[]string{"chat", "--user", "1", "extra"}, `unexpected argument "extra"`},
		{[]string{"chat", "--user", "1", "--transport", "tls"}, `--transport "tls": want plain, noise or auto`},
	} {
		code, _, stderr := runMain(t, nil, tc.args...)
		if code != 2 || !strings.Contains(stderr, tc.want) {
			t.Errorf("switchboard %v: exit %d, want 2 naming %q\n%s", tc.args, code, tc.want, stderr)
		}
	}
}

// TestChatTransport: auto is Noise unless the address is on loopback (a
// default server offers plain only there); the device key is made once in
// the state folder, owner-only, and the tokens minted over Noise are bound
// to it.
func TestChatTransport(t *testing.T) {
	for _, tc := range []struct {
		transport, addr string
		noise           bool
	}{
		{"auto", "127.0.0.1:7070", false},
		{"auto", "127.9.9.9:7070", false},
		{"auto", "localhost:7070", false},
		{"auto", "[::1]:7070", false},
		{"auto", "10.1.2.3:7070", true},
		{"auto", "chat.example.com:7070", true},
		{"noise", "127.0.0.1:7070", true},
		{"plain", "10.1.2.3:7070", false},
	} {
		if got, err := chatNoise(tc.transport, tc.addr); err != nil || got != tc.noise {
			t.Errorf("--transport %s --addr %s: noise %v (%v), want %v", tc.transport, tc.addr, got, err, tc.noise)
		}
	}

	state, data := filepath.Join(t.TempDir(), "state"), t.TempDir()
	keys, _, err := token.LoadOrCreate(filepath.Join(data, token.FileName))
	if err != nil {
		t.Fatal(err)
	}
	nz, err := chatNoiseOptions(state, data, 42)
	if err != nil {
		t.Fatal(err)
	}
	again, err := chatNoiseOptions(state, data, 42)
	if err != nil || again.Static.Public != nz.Static.Public {
		t.Fatalf("the device key changed between runs (%v)", err)
	}
	fi, err := os.Stat(filepath.Join(state, "user-42.noise"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("device key file: %v, %v; want mode 0600", fi, err)
	}
	mint, err := chatToken("", data, 42, nz)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := mint(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	c, err := keys.VerifyKey(tok, nz.Static.Public[:], time.Now())
	if err != nil || c.User != 42 || !c.Bound {
		t.Fatalf("minted token over Noise: claims %+v, %v; want user 42 bound to the device key", c, err)
	}
	if _, err := keys.VerifyKey(tok, bytes.Repeat([]byte{9}, 32), time.Now()); err == nil {
		t.Fatal("the token logs in with another device's key")
	}
}

// TestChatNoiseServerKey: the server's Noise key, when the data folder
// holds it, is taken for the first handshake (IK); without it, none is.
func TestChatNoiseServerKey(t *testing.T) {
	data := t.TempDir()
	nz, err := chatNoiseOptions(t.TempDir(), data, 42)
	if err != nil || nz.Server != nil {
		t.Fatalf("no server key file: server key %x (%v), want none", nz.Server, err)
	}
	keys, err := noise.LoadKeys(filepath.Join(data, noise.KeysFileName), true)
	if err != nil {
		t.Fatal(err)
	}
	nz, err = chatNoiseOptions(t.TempDir(), data, 42)
	if err != nil || !bytes.Equal(nz.Server, keys[0].Public[:]) {
		t.Fatalf("server key %x (%v), want the data folder's %x", nz.Server, err, keys[0].Public[:])
	}
}
