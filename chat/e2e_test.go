package chat

import (
	"context"
	"crypto/rand"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	tea "charm.land/bubbletea/v2"
	"github.com/charmbracelet/x/ansi"

	"switchboard/client"
	"switchboard/internal/testutil"
	"switchboard/node"
	"switchboard/noise"
	"switchboard/token"
)

// server is a Switchboard in the test's process that can stop and start
// again on the same address and data folder.
type server struct {
	t      *testing.T
	dir    string
	addr   string
	secret []byte
	n      *node.Node
	noise  bool // Noise only: chats log in with a device key and bound tokens
}

func startServer(t *testing.T) *server {
	s := &server{t: t, dir: t.TempDir(), addr: "127.0.0.1:0", secret: make([]byte, token.SecretLen)}
	for i := range s.secret {
		s.secret[i] = byte(i + 7)
	}
	s.start()
	t.Cleanup(s.stop)
	return s
}

func (s *server) start() {
	s.t.Helper()
	cfg := node.Default()
	cfg.Data = s.dir
	cfg.Metrics = ""
	cfg.Logger = slog.New(slog.DiscardHandler)
	cfg.Gateway.Addr = s.addr
	cfg.Gateway.Loops = 1
	cfg.Gateway.Keys = token.Keys{1: s.secret}
	cfg.Gateway.GoAwayAfter = 10 * time.Millisecond
	if s.noise {
		cfg.Transport = "noise"
	}
	// A restart binds the address again; a moment after the stop it may
	// still be held, so the start is retried until a deadline.
	var n *node.Node
	var err error
	testutil.Eventually(s.t, 5*time.Second, "the server to start on "+s.addr, func() bool {
		n, err = node.Start(cfg)
		return err == nil
	}, func() string { return err.Error() })
	s.n, s.addr = n, n.Addr().String()
}

func (s *server) stop() {
	if s.n == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s.n.Stop(ctx)
	s.n = nil
}

// screenDriver runs one chat as bubbletea would: every message goes to the
// model under one lock, from the pump and from the test's key presses.
type screenDriver struct {
	t      *testing.T
	mu     sync.Mutex
	c      *Client
	cancel context.CancelFunc
	done   chan struct{}
}

func (s *server) openChat(t *testing.T, user uint64, stateDir string) *screenDriver {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	o := Options{
		Addr: s.addr, User: user, StateDir: stateDir,
		Token: func(context.Context) ([]byte, error) {
			return token.Mint(s.secret, token.Claims{KeyID: 1, User: user, Device: 1, Expiry: time.Now().Add(time.Hour)}), nil
		},
		Session: client.Config{MinBackoff: 20 * time.Millisecond, MaxBackoff: 100 * time.Millisecond},
	}
	if s.noise {
		k, err := noise.NewKeypair(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		o.Noise = &client.NoiseOptions{Static: k}
		o.Token = func(context.Context) ([]byte, error) {
			return token.MintBound(s.secret, token.Claims{KeyID: 1, User: user, Device: 1, Expiry: time.Now().Add(time.Hour)}, k.Public[:]), nil
		}
	}
	c, err := Open(ctx, o)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	d := &screenDriver{t: t, c: c, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(d.done)
		c.Pump(ctx, d.update)
	}()
	t.Cleanup(d.close)
	return d
}

func (d *screenDriver) update(msg tea.Msg) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.c.Model.Update(msg)
}

func (d *screenDriver) close() {
	d.cancel()
	d.c.Close()
	<-d.done
}

func (d *screenDriver) typeLine(s string) {
	for _, r := range s {
		k := tea.KeyPressMsg{Code: r, Text: string(r)}
		if r == ' ' {
			k.Code = tea.KeySpace
		}
		d.update(k)
	}
	d.update(tea.KeyPressMsg{Code: tea.KeyEnter})
}

func (d *screenDriver) screen() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return ansi.Strip(d.c.Model.Render())
}

// waitFor polls the screen until it shows every part, or fails after 10 s.
func (d *screenDriver) waitFor(parts ...string) {
	d.t.Helper()
	testutil.Eventually(d.t, 10*time.Second, "the screen to show "+strings.Join(parts, " and "), func() bool {
		s := d.screen()
		for _, p := range parts {
			if !strings.Contains(s, p) {
				return false
			}
		}
		return true
	}, d.screen)
}

// TestChatOverNoise: two chats on a server that offers Noise only, as a
// default server off loopback does, talk both ways.
func TestChatOverNoise(t *testing.T) {
	srv := &server{t: t, dir: t.TempDir(), addr: "127.0.0.1:0", secret: make([]byte, token.SecretLen), noise: true}
	srv.start()
	t.Cleanup(srv.stop)
	one := srv.openChat(t, 1, t.TempDir())
	two := srv.openChat(t, 2, t.TempDir())
	one.waitFor("caught up")
	two.waitFor("caught up")
	one.typeLine("/to 2")
	two.typeLine("/to 1")
	one.typeLine("sealed hello")
	two.waitFor("1: sealed hello")
	two.typeLine("sealed reply")
	one.waitFor("2: sealed reply", "you: sealed hello ✓✓ read")
	if hs := one.c.Conn.Status(); hs.State != client.StateCaughtUp {
		t.Fatalf("user 1's status %+v", hs)
	}
}

// TestChatEndToEnd: two chats on a real server. User 1's message appears on
// user 2's screen and gains its ticks up to read; a server restart takes
// the status offline and back to caught up, and a message typed while it
// was down goes once it is back; a restarted chat shows what came while it
// was away once, after its history.
func TestChatEndToEnd(t *testing.T) {
	srv := startServer(t)
	dir1, dir2 := t.TempDir(), t.TempDir()
	one := srv.openChat(t, 1, dir1)
	two := srv.openChat(t, 2, dir2)
	one.waitFor("caught up")
	two.waitFor("caught up")

	two.typeLine("/to 1")
	one.typeLine("/to 2")
	one.typeLine("hello from 1")
	two.waitFor("1: hello from 1")
	one.waitFor("you: hello from 1 ✓✓ read")

	srv.stop()
	one.waitFor("offline")
	two.waitFor("offline")
	one.typeLine("while down")
	one.waitFor("you: while down …", "1 unconfirmed")
	srv.start()
	one.waitFor("caught up", "you: while down ✓")
	two.waitFor("caught up", "1: while down")

	two.close() // user 2 quits; user 1 writes on
	one.typeLine("while 2 is away")
	one.waitFor("you: while 2 is away ✓")
	two = srv.openChat(t, 2, dir2)
	two.waitFor("caught up", "1: while 2 is away")
	if s := two.screen(); strings.Count(s, "1: hello from 1") != 1 || strings.Count(s, "1: while down") != 1 ||
		strings.Index(s, "1: while down") > strings.Index(s, "1: while 2 is away") {
		t.Fatalf("after the restart, user 2's screen should show each message once, in order:\n%s", s)
	}
	one.waitFor("you: while 2 is away ✓✓ read")
}
