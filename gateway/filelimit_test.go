package gateway_test

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"switchboard/gateway"
	"switchboard/protocol"
	"switchboard/token"

	"golang.org/x/sys/unix"
)

// TestOpenFileCounts: both ways of counting the process's descriptors (the
// size of /proc/self/fd, and reading it on kernels before 6.2) agree, and
// see ten more files open.
func TestOpenFileCounts(t *testing.T) {
	if n, err := gateway.CountOpenFiles(); err != nil || n <= 0 {
		t.Fatalf("CountOpenFiles = %d, %v", n, err)
	}
	counts := func() (int, int) {
		t.Helper()
		a, err := gateway.CountOpenFiles()
		if err != nil {
			t.Fatal(err)
		}
		b, err := gateway.ReadOpenFiles()
		if err != nil {
			t.Fatal(err)
		}
		return a, b
	}
	// Other goroutines (a previous test's store closing, the runtime) may
	// open or close a descriptor between two counts: retry until one round
	// is undisturbed.
	deadline := time.Now().Add(5 * time.Second)
	for {
		a0, b0 := counts()
		var files []*os.File
		for range 10 {
			f, err := os.Open(os.DevNull)
			if err != nil {
				t.Fatal(err)
			}
			files = append(files, f)
		}
		a1, b1 := counts()
		for _, f := range files {
			f.Close()
		}
		if a0 == b0 && a1 == b1 && a1-a0 == 10 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("stat count %d then %d, read count %d then %d; want equal, 10 apart", a0, a1, b0, b1)
		}
	}
}

// TestMaxConnsOverFileLimit: New refuses a MaxConns the open-file limit
// cannot hold beside the reserve, naming the numbers, and otherwise sets the
// cap in force. With 100 files open and 2 loops (8 more files once the
// engine runs), the reserve is 108 + 64 + 108/4 = 199.
func TestMaxConnsOverFileLimit(t *testing.T) {
	for _, tc := range []struct {
		name      string
		limit     int
		maxConns  int
		wantErr   []string // substrings of the error; nil: no error
		wantCap   int64
		wantSpare int64
	}{
		{name: "derived", limit: 1000, maxConns: 0, wantCap: 801, wantSpare: 199},
		{name: "at the limit", limit: 1000, maxConns: 801, wantCap: 801, wantSpare: 199},
		{name: "below the limit", limit: 1000, maxConns: 300, wantCap: 300, wantSpare: 199},
		{name: "over the limit", limit: 1000, maxConns: 802, wantErr: []string{
			"MaxConns 802", "open-file limit 1000", "reserve of 199", "108 files open besides connections", "+ 64 headroom, + a quarter of those 108", "at most 801"}},
		{name: "no room", limit: 150, maxConns: 0, wantErr: []string{
			"open-file limit 150 leaves no room", "reserve of 199"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := gateway.Config{
				Addr: "127.0.0.1:0", Loops: 2, Keys: token.Keys{1: make([]byte, token.SecretLen)},
				MaxConns: tc.maxConns, Logger: quietLogger(),
				OpenFiles: func() (int, error) { return 100, nil },
			}
			srv, err := gateway.NewWithFileLimit(cfg, nil, tc.limit)
			if tc.wantErr != nil {
				if !errors.Is(err, gateway.ErrFileLimit) {
					t.Fatalf("New: %v, want ErrFileLimit", err)
				}
				for _, s := range tc.wantErr {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("error %q does not say %q", err, s)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			if got := srv.Stats().ConnCap.Load(); got != tc.wantCap {
				t.Errorf("ConnCap = %d, want %d", got, tc.wantCap)
			}
			if got := srv.Stats().FDReserve.Load(); got != tc.wantSpare {
				t.Errorf("FDReserve = %d, want %d", got, tc.wantSpare)
			}
		})
	}
}

// TestCapFollowsOpenFiles: the cap follows the files open besides
// connections, counted each second. Under a limit of 130 with 40 other
// files (reserve 40 + 64 + 10 = 114) it is 16. When the store grows to 48
// files (reserve 124) it falls to 6: the 16 open sessions are kept and
// still route, but with 11 of them left a login is refused SERVER_FULL. When
// the files close again, the cap is back at 16.
func TestCapFollowsOpenFiles(t *testing.T) {
	const limit = 130
	var other atomic.Int64
	other.Store(40)
	var srv atomic.Pointer[gateway.Server]
	openFiles := func() (int, error) {
		n := int(other.Load())
		if s := srv.Load(); s != nil {
			n += s.Conns()
		}
		return n, nil
	}
	ts := startServer(t, serverOptions{fileLimit: limit, gw: func(c *gateway.Config) { c.OpenFiles = openFiles }})
	srv.Store(ts.Srv)
	st := ts.Srv.Stats()
	waitCap := func(want int64) {
		t.Helper()
		eventually(t, 5*time.Second, "the cap to follow the open files", func() bool { return st.ConnCap.Load() == want })
	}
	full := func(user uint64) {
		t.Helper()
		_, err := ts.TryDial(user, protocol.ClientOptions{})
		var e *protocol.Error
		if !errors.As(err, &e) || e.Code != protocol.CodeServerFull {
			t.Fatalf("login over the cap (%d open, cap %d): %v, want ERROR SERVER_FULL", ts.Srv.Conns(), st.ConnCap.Load(), err)
		}
	}

	waitCap(16)
	if got := st.FDReserve.Load(); got != 114 {
		t.Fatalf("FDReserve = %d, want 114", got)
	}
	var held []*protocol.Client
	for i := range 16 {
		held = append(held, ts.Dial(uint64(i+1), protocol.ClientOptions{}))
	}
	full(100)

	other.Store(48) // the store opened 8 more files
	waitCap(6)
	for _, c := range held[:5] {
		c.Close()
	}
	held = held[5:]
	eventually(t, 5*time.Second, "the server to see 5 closes", func() bool { return ts.Srv.Conns() == 11 })
	full(101)
	// The sessions over the new cap are kept, and still carry messages.
	from, to := held[0], held[len(held)-1]
	id, err := from.Send(16, []byte("kept"))
	if err != nil {
		t.Fatal(err)
	}
	if d := recvDelivers(t, to, 1, 10*time.Second)[0]; d.MsgID != id || d.From != 6 {
		t.Fatalf("delivered %d from %d, want %d from 6", d.MsgID, d.From, id)
	}

	other.Store(40) // and closed them
	waitCap(16)
	for i := range 5 {
		held = append(held, ts.Dial(uint64(200+i), protocol.ClientOptions{}))
	}
	full(102)
	if got := st.Refused.Load(); got != 3 {
		t.Fatalf("Refused = %d, want 3", got)
	}
	if got := st.Closes[protocol.CodeServerFull].Load(); got != 0 {
		t.Fatalf("%d open sessions closed SERVER_FULL, want none", got)
	}
}

// countMsg is a slog.Handler that counts the records with one message.
type countMsg struct {
	msg string
	n   atomic.Int32
}

func (h *countMsg) Enabled(context.Context, slog.Level) bool { return true }
func (h *countMsg) Handle(_ context.Context, r slog.Record) error {
	if r.Message == h.msg {
		h.n.Add(1)
	}
	return nil
}
func (h *countMsg) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *countMsg) WithGroup(string) slog.Handler      { return h }

// TestCapKeptWhenCountFails: a count of open files that fails leaves the
// cap and the reserve where the last count put them (16 and 114 under a
// limit of 130 with 40 other files), rather than counting no files open
// and raising the cap past what the limit holds; the failure is logged
// once, not every second.
func TestCapKeptWhenCountFails(t *testing.T) {
	var failing atomic.Bool
	var failed atomic.Int32
	openFiles := func() (int, error) {
		if failing.Load() {
			failed.Add(1)
			return 0, errors.New("test: /proc/self/fd unreadable")
		}
		return 40, nil
	}
	logged := &countMsg{msg: "gateway: counting open files failed; the connection cap stays where it was"}
	ts := startServer(t, serverOptions{fileLimit: 130, gw: func(c *gateway.Config) {
		c.OpenFiles, c.Logger = openFiles, slog.New(logged)
	}})
	st := ts.Srv.Stats()
	eventually(t, 5*time.Second, "the first count to set the cap", func() bool { return st.ConnCap.Load() == 16 })
	failing.Store(true)
	eventually(t, 10*time.Second, "two failed counts", func() bool { return failed.Load() >= 2 })
	if c, r := st.ConnCap.Load(), st.FDReserve.Load(); c != 16 || r != 114 {
		t.Fatalf("after failed counts: cap %d, reserve %d; want 16, 114 as before", c, r)
	}
	if n := logged.n.Load(); n != 1 {
		t.Fatalf("%d failed counts logged %d times, want once", failed.Load(), n)
	}
}

// TestOpenFileLimitIsTheSoftLimit: the limit the cap keeps under is the
// process's soft open-file limit, the one accept fails at, not the hard
// one it could be raised to; it follows the soft limit when that changes.
func TestOpenFileLimitIsTheSoftLimit(t *testing.T) {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	if lim.Cur > 1<<30 || lim.Cur < 2000 {
		t.Skipf("soft open-file limit %d: outside what this test lowers", lim.Cur)
	}
	defer unix.Setrlimit(unix.RLIMIT_NOFILE, &lim)
	for _, soft := range []uint64{lim.Cur, lim.Cur - 1000} {
		lower := unix.Rlimit{Cur: soft, Max: lim.Max}
		if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &lower); err != nil {
			t.Fatal(err)
		}
		if got, err := gateway.OpenFileLimit(); err != nil || got != int(soft) {
			t.Fatalf("open-file limit %d, %v under soft limit %d (hard %d); want %d", got, err, soft, lim.Max, soft)
		}
	}
}
