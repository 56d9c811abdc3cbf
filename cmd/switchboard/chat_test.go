package main

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

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
	mint, err := chatToken("", dir, 42)
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
	given, err := chatToken("0a0b", dir, 42)
	if err != nil {
		t.Fatal(err)
	}
	if tok, _ := given(context.Background()); string(tok) != "\x0a\x0b" {
		t.Fatalf("--token 0a0b gave % x", tok)
	}
	if _, err := chatToken("", t.TempDir(), 42); err == nil || !strings.Contains(err.Error(), "make run") {
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
	} {
		code, _, stderr := runMain(t, nil, tc.args...)
		if code != 2 || !strings.Contains(stderr, tc.want) {
			t.Errorf("switchboard %v: exit %d, want 2 naming %q\n%s", tc.args, code, tc.want, stderr)
		}
	}
}
