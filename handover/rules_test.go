package handover

import (
	"bytes"
	"errors"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// Rules of the channel and the records, each a test of its own: the
// umask Listen borrows, the largest batch and the largest message, what
// Send refuses before writing, what Recv refuses and the descriptors it
// then closes, and the bounds of a record.

// socketPair returns the two ends of a SOCK_SEQPACKET pair as connections.
func socketPair(t *testing.T) (*net.UnixConn, *net.UnixConn) {
	t.Helper()
	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	conn := func(fd int) *net.UnixConn {
		f := os.NewFile(uintptr(fd), "handover")
		c, err := net.FileConn(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c.(*net.UnixConn)
	}
	return conn(pair[0]), conn(pair[1])
}

// pipe returns a pipe's read and write ends, non-blocking, closed at the
// end of the test unless the test closes them first.
func pipe(t *testing.T) (r, w int) {
	t.Helper()
	p := make([]int, 2)
	if err := unix.Pipe2(p, unix.O_CLOEXEC|unix.O_NONBLOCK); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(p[0]); unix.Close(p[1]) })
	return p[0], p[1]
}

// TestListenKeepsTheUmask: Listen narrows the umask only while it makes
// the socket; the process's own umask is back when it returns.
func TestListenKeepsTheUmask(t *testing.T) {
	orig := unix.Umask(0o027)
	defer unix.Umask(orig)
	ln, err := Listen(filepath.Join(t.TempDir(), "handover.sock"))
	if err != nil {
		t.Fatal(err)
	}
	ln.Close()
	if got := unix.Umask(0o027); got != 0o027 {
		t.Fatalf("umask after Listen %#o, want %#o", got, 0o027)
	}
}

// TestFullBatch: a batch of BatchConns records passes with all its
// descriptors, and one more is refused before anything is sent.
func TestFullBatch(t *testing.T) {
	ca, cb := socketPair(t)
	a, b := NewChannel(ca), NewChannel(cb)
	r, w := pipe(t)
	conns := make([]Conn, BatchConns)
	for i := range conns {
		conns[i] = Conn{State: StateReady, User: uint64(i + 1)}
	}
	fds := slices.Repeat([]int{w}, BatchConns)
	if err := a.Send(&Message{Kind: KindBatch, Conns: append(conns, Conn{}), FDs: append(fds, w)}); err == nil {
		t.Fatalf("a batch of %d sent", BatchConns+1)
	}
	if err := a.Send(&Message{Kind: KindBatch, Conns: conns, FDs: fds}); err != nil {
		t.Fatal(err)
	}
	m, err := b.Recv()
	if err != nil || m.Kind != KindBatch || len(m.FDs) != BatchConns || !reflect.DeepEqual(m.Conns, conns) {
		t.Fatalf("BATCH of %d: %d records, %d descriptors, %v", BatchConns, len(m.Conns), len(m.FDs), err)
	}
	if _, err := unix.Write(m.FDs[BatchConns-1], []byte("z")); err != nil {
		t.Fatal(err)
	}
	for _, fd := range m.FDs {
		unix.Close(fd)
	}
	got := make([]byte, 2)
	if n, err := unix.Read(r, got); err != nil || string(got[:n]) != "z" {
		t.Fatalf("the last descriptor wrote %q, %v; want \"z\"", got[:n], err)
	}
}

// TestLargestMessage: a batch of BatchBytes of records and then one with
// MaxInbound unread bytes, the most a batch may carry, passes whole.
func TestLargestMessage(t *testing.T) {
	ca, cb := socketPair(t)
	a, b := NewChannel(ca), NewChannel(cb)
	_, w := pipe(t)
	conns := []Conn{
		{State: StateReady, User: 1, Inbound: bytes.Repeat([]byte{1}, BatchBytes-200)},
		{State: StateReady, User: 2, Inbound: bytes.Repeat([]byte{2}, MaxInbound)},
	}
	if err := a.Send(&Message{Kind: KindBatch, Conns: conns, FDs: []int{w, w}}); err != nil {
		t.Fatalf("the largest batch: %v", err)
	}
	m, err := b.Recv()
	if err != nil || !reflect.DeepEqual(m.Conns, conns) {
		t.Fatalf("the largest batch: %d records, %v", len(m.Conns), err)
	}
	for _, fd := range m.FDs {
		unix.Close(fd)
	}
}

// TestSendRefuses: a batch whose records and descriptors do not pair up,
// and a message over maxMessage, are refused by Send, and nothing of them
// reaches the other end.
func TestSendRefuses(t *testing.T) {
	ca, cb := socketPair(t)
	a, b := NewChannel(ca), NewChannel(cb)
	_, w := pipe(t)
	for name, m := range map[string]*Message{
		"two records, one descriptor": {Kind: KindBatch, Conns: make([]Conn, 2), FDs: []int{w}},
		"one record, two descriptors": {Kind: KindBatch, Conns: make([]Conn, 1), FDs: []int{w, w}},
		"a REFUSE over maxMessage":    {Kind: KindRefuse, Reason: string(make([]byte, maxMessage))},
	} {
		if err := a.Send(m); err == nil {
			t.Errorf("%s: sent", name)
		}
	}
	if err := a.Send(&Message{Kind: KindReady}); err != nil {
		t.Fatal(err)
	}
	if m, err := b.Recv(); err != nil || m.Kind != KindReady {
		t.Fatalf("after the refused messages: %+v, %v; want READY alone", m, err)
	}
}

// TestRecvRefusesTruncated: a message longer than a channel reads is
// refused, not decoded from its first maxMessage bytes.
func TestRecvRefusesTruncated(t *testing.T) {
	raw, cb := socketPair(t)
	b := NewChannel(cb)
	if err := raw.SetWriteBuffer(4 * maxMessage); err != nil {
		t.Fatal(err)
	}
	long := append([]byte{byte(KindRefuse)}, make([]byte, maxMessage)...)
	if _, _, err := raw.WriteMsgUnix(long, nil, nil); err != nil {
		t.Fatal(err)
	}
	if m, err := b.Recv(); !errors.Is(err, ErrProtocol) {
		t.Fatalf("a message of %d bytes: %s of %d bytes, %v; want ErrProtocol", len(long), m.Kind, len(m.Reason), err)
	}
}

// TestRecvClosesRefusedDescriptors: the descriptors of a message Recv
// refuses are closed, not leaked: the pipe whose write end came with it
// reads end-of-file once the sender closes its own copy.
func TestRecvClosesRefusedDescriptors(t *testing.T) {
	for name, msg := range map[string][]byte{
		"a HELLO with a descriptor": {byte(KindHello), 1, 0, 5},
		"a BATCH with a record cut": {byte(KindBatch), 1, StateReady},
	} {
		t.Run(name, func(t *testing.T) {
			raw, cb := socketPair(t)
			b := NewChannel(cb)
			r, w := pipe(t)
			if _, _, err := raw.WriteMsgUnix(msg, unix.UnixRights(w), nil); err != nil {
				t.Fatal(err)
			}
			unix.Close(w)
			if _, err := b.Recv(); !errors.Is(err, ErrProtocol) {
				t.Fatalf("Recv = %v, want ErrProtocol", err)
			}
			if n, err := unix.Read(r, make([]byte, 1)); n != 0 || err != nil {
				t.Fatalf("pipe read %d, %v; want end-of-file: the refused descriptor is still open", n, err)
			}
		})
	}
}

// TestParseRightsKeepsWhatItRead: control data that goes bad after a
// rights message returns that message's descriptors with the error, for
// the caller to close.
func TestParseRightsKeepsWhatItRead(t *testing.T) {
	oob := append(unix.UnixRights(5, 6), unix.UnixCredentials(&unix.Ucred{Pid: 1})...)
	fds, err := parseRights(oob)
	if !errors.Is(err, ErrProtocol) || !slices.Equal(fds, []int{5, 6}) {
		t.Fatalf("parseRights = %v, %v; want [5 6] and ErrProtocol", fds, err)
	}
}

// TestRecordBounds: a record may carry exactly MaxInbound unread bytes, and
// no flag this version does not know.
func TestRecordBounds(t *testing.T) {
	full := Conn{State: StateReady, User: 1, Inbound: make([]byte, MaxInbound)}
	b := full.Append(nil)
	var got Conn
	if n, err := got.Decode(b); err != nil || n != len(b) || len(got.Inbound) != MaxInbound {
		t.Fatalf("a record of MaxInbound unread bytes: n=%d of %d, %d bytes, %v", n, len(b), len(got.Inbound), err)
	}
	for _, f := range []uint8{FlagPeer << 1, 0x80} {
		b := (&Conn{State: StateReady, Flags: f}).Append(nil)
		if _, err := new(Conn).Decode(b); !errors.Is(err, ErrRecord) {
			t.Errorf("a record with flags %#x: %v, want ErrRecord", f, err)
		}
	}
}

// TestSendKeepsReceivedRecords: a BATCH's records stay as they arrived
// until the next Recv (Recv's doc), even when the receiver sends in
// between, as a successor that refuses does.
func TestSendKeepsReceivedRecords(t *testing.T) {
	ca, cb := socketPair(t)
	a, b := NewChannel(ca), NewChannel(cb)
	_, w := pipe(t)
	conns := []Conn{{State: StateReady, User: 1, Inbound: bytes.Repeat([]byte{1}, 100)}}
	if err := a.Send(&Message{Kind: KindBatch, Conns: conns, FDs: []int{w}}); err != nil {
		t.Fatal(err)
	}
	m, err := b.Recv()
	if err != nil {
		t.Fatal(err)
	}
	for _, fd := range m.FDs {
		unix.Close(fd)
	}
	if err := b.Send(&Message{Kind: KindRefuse, Reason: strings.Repeat("x", 200)}); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(m.Conns, conns) {
		t.Fatalf("after a Send, the received records are %+v, want %+v", m.Conns, conns)
	}
}
