package handover

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"

	"golang.org/x/sys/unix"
)

func sampleConns() []Conn {
	a := Conn{State: StateReady, Flags: FlagDict | FlagNoise, Ping: 240, User: 7654321, Delivered: 4321, Acked: 4300, Expires: 1_790_000_000_000, SendN: 17, RecvN: 9, Inbound: []byte{3, 0x0a, 1, 2}}
	a.SendKey[0], a.RecvKey[31] = 1, 2
	b := Conn{State: StateLogin, Flags: FlagNoise | FlagPeer}
	b.Peer[5] = 9
	return []Conn{a, b, {State: StatePreface, Inbound: []byte{'S', 'B'}}, {State: StateJoining, User: 1, Acked: 5, Delivered: 5, Expires: -1}}
}

func TestRecordRoundTrip(t *testing.T) {
	for _, c := range sampleConns() {
		b := c.Append(nil)
		var got Conn
		n, err := got.Decode(b)
		if err != nil || n != len(b) {
			t.Fatalf("decode %+v: n=%d of %d, %v", c, n, len(b), err)
		}
		if !reflect.DeepEqual(got, c) {
			t.Fatalf("got %+v, want %+v", got, c)
		}
		for cut := range len(b) {
			if _, err := got.Decode(b[:cut]); err == nil {
				t.Fatalf("record cut at %d of %d decoded", cut, len(b))
			}
		}
	}
	bad := (&Conn{State: 1}).Append(nil) // the handshake state is never handed over
	if _, err := new(Conn).Decode(bad); err == nil {
		t.Fatal("a record in the handshake state decoded")
	}
	big := Conn{Inbound: make([]byte, MaxInbound+1)}
	if _, err := new(Conn).Decode(big.Append(nil)); err == nil {
		t.Fatal("a record over MaxInbound decoded")
	}
}

// TestChannelPassesSockets sends a batch with real descriptors over a
// socket pair and checks the records and that each descriptor arrives as
// the same socket, in order.
func TestChannelPassesSockets(t *testing.T) {
	x, y := socketPair(t)
	a, b := NewChannel(x), NewChannel(y)
	conns := sampleConns()
	var fds []int
	var peers []*os.File
	for range conns {
		p := make([]int, 2)
		if err := unix.Pipe2(p, unix.O_CLOEXEC); err != nil {
			t.Fatal(err)
		}
		fds = append(fds, p[1])
		peers = append(peers, os.NewFile(uintptr(p[0]), "pipe"))
	}
	if err := a.Send(&Message{Kind: KindHello, Version: Version, PID: 1234}); err != nil {
		t.Fatal(err)
	}
	if err := a.Send(&Message{Kind: KindBatch, Conns: conns, FDs: fds}); err != nil {
		t.Fatal(err)
	}
	if err := a.Send(&Message{Kind: KindClosed, Total: len(conns)}); err != nil {
		t.Fatal(err)
	}
	for _, fd := range fds {
		unix.Close(fd) // the receiver holds copies
	}
	m, err := b.Recv()
	if err != nil || m.Kind != KindHello || m.Version != Version || m.PID != 1234 {
		t.Fatalf("HELLO: %+v, %v", m, err)
	}
	m, err = b.Recv()
	if err != nil || m.Kind != KindBatch || len(m.FDs) != len(conns) {
		t.Fatalf("BATCH: %+v, %v", m, err)
	}
	if !reflect.DeepEqual(m.Conns, conns) {
		t.Fatalf("records: got %+v, want %+v", m.Conns, conns)
	}
	for i, fd := range m.FDs {
		msg := []byte{byte('a' + i)}
		if _, err := unix.Write(fd, msg); err != nil {
			t.Fatal(err)
		}
		unix.Close(fd)
		got := make([]byte, 2)
		n, _ := peers[i].Read(got)
		if !bytes.Equal(got[:n], msg) {
			t.Fatalf("descriptor %d wrote %q to pipe %d, want %q", i, got[:n], i, msg)
		}
	}
	if m, err = b.Recv(); err != nil || m.Kind != KindClosed || m.Total != len(conns) {
		t.Fatalf("CLOSED: %+v, %v", m, err)
	}
}

// TestListenRefusesALiveSocket: a second server on the same folder must
// not take the socket of one that runs; a stale file is replaced.
func TestListenRefusesALiveSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "handover.sock")
	ln, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Listen(path); err == nil {
		t.Fatal("a second Listen on a live socket succeeded")
	}
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm()&0o077 != 0 {
		t.Fatalf("socket mode %v, %v; want owner-only", st.Mode().Perm(), err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
	ln2, err := Listen(path) // the file is left, nobody listens: stale
	if err != nil {
		t.Fatalf("stale socket: %v", err)
	}
	ln2.Close()
}

func TestDecodeRefuses(t *testing.T) {
	for name, c := range map[string]struct {
		b   []byte
		fds []int
	}{
		"empty":              {nil, nil},
		"unknown kind":       {[]byte{99}, nil},
		"short hello":        {[]byte{byte(KindHello), 1}, nil},
		"bytes after ready":  {[]byte{byte(KindReady), 0}, nil},
		"fds with a hello":   {[]byte{byte(KindHello), 1, 0, 5}, []int{-1}},
		"count without fds":  {[]byte{byte(KindBatch), 1}, nil},
		"record cut":         {append([]byte{byte(KindBatch), 1}, 4, 0), []int{-1}},
		"bytes after closed": {[]byte{byte(KindClosed), 1, 2}, nil},
		"a record, no fd":    {append([]byte{byte(KindBatch), 1}, sampleConns()[2].Append(nil)...), nil},
		"an fd, no record":   {[]byte{byte(KindBatch), 0}, []int{-1}},
	} {
		if _, err := Decode(c.b, c.fds); err == nil {
			t.Errorf("%s: decoded", name)
		}
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(append([]byte{byte(KindBatch), 1}, sampleConns()[0].Append(nil)...), 1)
	f.Add([]byte{byte(KindHello), 1, 0, 5}, 0)
	f.Add([]byte{byte(KindBegin), '1', ':', '2'}, 0)
	f.Fuzz(func(t *testing.T, b []byte, nfds int) {
		fds := make([]int, min(max(nfds, 0), 4))
		m, err := Decode(b, fds)
		if err != nil {
			return
		}
		if m.Kind == KindBatch {
			if len(m.Conns) != len(fds) {
				t.Fatalf("%d records with %d descriptors", len(m.Conns), len(fds))
			}
			var again []byte
			again = append(again, byte(KindBatch))
			again = binary.AppendUvarint(again, uint64(len(m.Conns)))
			for i := range m.Conns {
				again = m.Conns[i].Append(again)
			}
			if _, err := Decode(again, fds); err != nil {
				t.Fatalf("re-encoding did not decode: %v", err)
			}
		}
	})
}

// FuzzParseRights: whatever control data a message carries, parseRights
// returns without a panic, and what it reads from rights messages it built
// itself is exactly their descriptors, in order. (It only reads: the
// numbers here are not open files, and nothing is closed.)
func FuzzParseRights(f *testing.F) {
	f.Add(unix.UnixRights(3, 4), []byte{})
	f.Add(unix.UnixRights(7), []byte{1, 2, 3})
	f.Add([]byte{}, []byte{0xff})
	f.Fuzz(func(t *testing.T, oob, tail []byte) {
		_, _ = parseRights(oob)
		_, _ = parseRights(append(unix.UnixRights(5, 6), tail...))
		want := []int{len(oob), len(tail)}
		got, err := parseRights(append(unix.UnixRights(want[0]), unix.UnixRights(want[1])...))
		if err != nil || !slices.Equal(got, want) {
			t.Fatalf("two rights messages of %v: %v, %v", want, got, err)
		}
	})
}
