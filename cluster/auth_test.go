package cluster

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"switchboard/internal/testutil"
)

// TestNATSAdmitsOnlyKeyHolders: the embedded NATS server takes no client
// that does not prove one of the token keys: none, a wrong password, a
// key id it does not hold. A client with a key's credentials is admitted.
func TestNATSAdmitsOnlyKeyHolders(t *testing.T) {
	cfgs := testConfigs(t, 1)
	cs := startAll(t, cfgs, []func(uint32, []byte){newInbox().handle})
	url := "nats://" + cfgs[0].Nodes[0].NATS
	user, pass := cfgs[0].credentials()
	for _, tc := range []struct {
		name string
		opts []nats.Option
	}{
		{"no credentials", nil},
		{"a wrong password", []nats.Option{nats.UserInfo(user, strings.Repeat("0", len(pass)))}},
		{"another key's id", []nats.Option{nats.UserInfo("2", pass)}},
		{"a token", []nats.Option{nats.Token(pass)}},
	} {
		nc, err := nats.Connect(url, append(tc.opts, nats.Timeout(2*time.Second))...)
		if err == nil {
			nc.Close()
			t.Errorf("%s: admitted", tc.name)
		} else if !strings.Contains(strings.ToLower(err.Error()), "authorization") {
			t.Errorf("%s: %v, want an authorization violation", tc.name, err)
		}
	}
	nc, err := nats.Connect(url, nats.UserInfo(user, pass), nats.Timeout(2*time.Second))
	if err != nil {
		t.Fatalf("the node's own credentials: %v", err)
	}
	nc.Close()
	if !cs[0].Up(1) {
		t.Errorf("the node is not up to itself")
	}
}

// TestRoutesNeedTheKeys: a node whose keys file is another cluster's is
// never admitted, so it never hears the others nor they it; nodes whose
// files differ only by a key being rotated in (one has keys 1 and 2,
// another only 1) form the cluster and carry payloads both ways.
func TestRoutesNeedTheKeys(t *testing.T) {
	t.Run("other keys", func(t *testing.T) {
		cfgs := testConfigs(t, 2)
		cfgs[1].Keys = map[uint32][]byte{1: []byte("another cluster's key, 32 bytes!")}
		logs := []*testutil.Buffer{{}, {}}
		for i := range cfgs {
			cfgs[i].DownAfter = 600 * time.Millisecond
			cfgs[i].Logger = slog.New(slog.NewTextHandler(logs[i], &slog.HandlerOptions{Level: slog.LevelDebug}))
		}
		cs := startAll(t, cfgs, []func(uint32, []byte){newInbox().handle, newInbox().handle})
		// Start waited DownAfter for its peer; a route admitted in that
		// time would have brought its heartbeats.
		if cs[0].Up(2) || cs[1].Up(1) {
			t.Fatalf("nodes with different keys see each other up: %v, %v", cs[0].Up(2), cs[1].Up(1))
		}
		// Each says why, once: NATS's retries a second later are at
		// debug, and so are its failed dials.
		for i, l := range logs {
			testutil.Eventually(t, 5*time.Second, "a refusal after the first", func() bool {
				return strings.Count(l.String(), "level=DEBUG msg=\"nats: ") > 0 &&
					strings.Count(l.String(), "Authorization Violation")+strings.Count(l.String(), "authentication error") >= 2
			})
			if n := strings.Count(l.String(), "does not prove this node's token keys and cluster name"); n != 1 {
				t.Errorf("node %d said %d times that the keys differ, want once:\n%s", i+1, n, l.String())
			}
			if strings.Contains(l.String(), "level=ERROR msg=\"nats: Error trying to connect to route") {
				t.Errorf("node %d logged a route dial at error:\n%s", i+1, l.String())
			}
		}
	})
	t.Run("a key rotated in on one node", func(t *testing.T) {
		cfgs := testConfigs(t, 2)
		cfgs[1].Keys = map[uint32][]byte{1: testKeys[1], 2: []byte("the next key, 32 bytes of secret")}
		boxes := []*inbox{newInbox(), newInbox()}
		cs := startAll(t, cfgs, []func(uint32, []byte){boxes[0].handle, boxes[1].handle})
		allUp(t, cs)
		for _, c := range cs {
			for to := uint32(1); to <= 2; to++ {
				if !c.Send(to, []byte("hello")) {
					t.Fatalf("node %d: Send to %d refused", c.Self(), to)
				}
			}
		}
		for i, b := range boxes {
			testutil.Eventually(t, 5*time.Second, "both payloads", func() bool { return b.n.Load() == 2 })
			if got := b.from(uint32(2 - i)); len(got) != 1 || got[0] != "hello" {
				t.Errorf("node %d from the other: %q", i+1, got)
			}
		}
	})
}
