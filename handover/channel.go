package handover

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// Kind is a message's type.
type Kind uint8

// Messages, in the order a handover sends them (doc.go).
const (
	KindHello  Kind = iota + 1 // new → old: Version, PID
	KindBegin                  // old → new: PID, Addr; the old process pauses unless refused at once
	KindBatch                  // old → new: Conns, with one descriptor each
	KindClosed                 // old → new: the store is closed; Total conns were sent
	KindReady                  // new → old: the store is open, the engine listens
	KindCommit                 // old → new: the connections are yours
	KindRefuse                 // either way: Reason; the handover is off
)

func (k Kind) String() string {
	switch k {
	case KindHello:
		return "HELLO"
	case KindBegin:
		return "BEGIN"
	case KindBatch:
		return "BATCH"
	case KindClosed:
		return "CLOSED"
	case KindReady:
		return "READY"
	case KindCommit:
		return "COMMIT"
	case KindRefuse:
		return "REFUSE"
	}
	return fmt.Sprintf("kind %d", uint8(k))
}

// Message is one message on the channel. Which fields count depends on
// Kind.
type Message struct {
	Kind    Kind
	Version uint16 // HELLO
	PID     int    // HELLO, BEGIN: the sender's process
	Addr    string // BEGIN: the client listener's address
	Total   int    // CLOSED
	Reason  string // REFUSE
	Conns   []Conn // BATCH
	FDs     []int  // BATCH: Conns[i]'s socket; the receiver owns them
}

// Batch limits: descriptors per message (the kernel takes at most 253 in
// one SCM_RIGHTS message) and record bytes before a batch is cut. A
// message is at most batchBytes plus one record (MaxInbound and a little),
// which fits a unix socket's default buffer.
const (
	BatchConns = 250
	BatchBytes = 96 << 10
	maxMessage = BatchBytes + MaxInbound + 1024
)

// ErrProtocol means the other process sent something this one does not
// understand.
var ErrProtocol = errors.New("handover: protocol error")

// Channel is one end of the unix socket two processes hand over on. It
// carries whole messages (SOCK_SEQPACKET) with descriptors beside them.
type Channel struct {
	c    *net.UnixConn
	buf  []byte // Recv's: a BATCH's records alias it
	oob  []byte
	sbuf []byte // Send's, apart, so that sending leaves received records alone
}

// Listen listens for a successor on path, a socket only the owner may
// use. A stale socket left by a process that died is replaced.
func Listen(path string) (*net.UnixListener, error) {
	if c, err := net.Dial("unixpacket", path); err == nil {
		c.Close()
		return nil, fmt.Errorf("handover: %s: another process listens there", path)
	}
	return Replace(path)
}

// Replace listens on path in place of the process that listened there
// (its successor does, once it committed).
func Replace(path string) (*net.UnixListener, error) {
	_ = os.Remove(path)
	old := unix.Umask(0o077)
	ln, err := net.ListenUnix("unixpacket", &net.UnixAddr{Name: path, Net: "unixpacket"})
	unix.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("handover: listening on %s: %w", path, err)
	}
	return ln, nil
}

// Dial connects to the process serving on path.
func Dial(path string) (*Channel, error) {
	c, err := net.DialUnix("unixpacket", nil, &net.UnixAddr{Name: path, Net: "unixpacket"})
	if err != nil {
		return nil, fmt.Errorf("handover: no server to take over from at %s: %w", path, err)
	}
	return NewChannel(c), nil
}

// NewChannel wraps an accepted or dialled connection.
func NewChannel(c *net.UnixConn) *Channel {
	_ = c.SetWriteBuffer(4 * maxMessage)
	_ = c.SetReadBuffer(4 * maxMessage)
	return &Channel{c: c, buf: make([]byte, maxMessage), oob: make([]byte, unix.CmsgSpace(4*BatchConns))}
}

// Close closes the channel.
func (ch *Channel) Close() error { return ch.c.Close() }

// SetDeadline bounds the next sends and receives.
func (ch *Channel) SetDeadline(t time.Time) error { return ch.c.SetDeadline(t) }

// Send sends m. A BATCH's descriptors stay the caller's (the kernel passes
// copies).
func (ch *Channel) Send(m *Message) error {
	b := append(ch.sbuf[:0], byte(m.Kind))
	var oob []byte
	switch m.Kind {
	case KindHello:
		b = binary.LittleEndian.AppendUint16(b, m.Version)
		b = binary.AppendUvarint(b, uint64(m.PID))
	case KindBegin:
		b = binary.AppendUvarint(b, uint64(m.PID))
		b = append(b, m.Addr...)
	case KindRefuse:
		b = append(b, m.Reason...)
	case KindClosed:
		b = binary.AppendUvarint(b, uint64(m.Total))
	case KindBatch:
		if len(m.Conns) != len(m.FDs) || len(m.FDs) > BatchConns {
			return fmt.Errorf("handover: batch of %d records and %d descriptors", len(m.Conns), len(m.FDs))
		}
		b = binary.AppendUvarint(b, uint64(len(m.Conns)))
		for i := range m.Conns {
			b = m.Conns[i].Append(b)
		}
		if len(m.FDs) > 0 {
			oob = unix.UnixRights(m.FDs...)
		}
	}
	if len(b) > maxMessage {
		return fmt.Errorf("handover: %s of %d bytes, at most %d", m.Kind, len(b), maxMessage)
	}
	n, _, err := ch.c.WriteMsgUnix(b, oob, nil)
	if err == nil && n != len(b) {
		err = fmt.Errorf("handover: short write of %s (%d of %d bytes)", m.Kind, n, len(b))
	}
	ch.sbuf = b[:0]
	return err
}

// Recv receives the next message. A BATCH's records alias the channel's
// buffer until the next Recv; its descriptors are the caller's to close.
func (ch *Channel) Recv() (Message, error) {
	n, oobn, flags, _, err := ch.c.ReadMsgUnix(ch.buf[:cap(ch.buf)], ch.oob)
	if err != nil {
		return Message{}, err
	}
	fds, ferr := parseRights(ch.oob[:oobn])
	if ferr == nil && flags&(unix.MSG_TRUNC|unix.MSG_CTRUNC) != 0 {
		ferr = fmt.Errorf("%w: message truncated", ErrProtocol)
	}
	m, derr := Decode(ch.buf[:n], fds)
	if err := errors.Join(ferr, derr); err != nil {
		for _, fd := range fds {
			unix.Close(fd)
		}
		return Message{}, err
	}
	return m, nil
}

// Decode decodes a message received with descriptors fds.
func Decode(b []byte, fds []int) (Message, error) {
	if len(b) == 0 {
		return Message{}, fmt.Errorf("%w: empty message", ErrProtocol)
	}
	m := Message{Kind: Kind(b[0])}
	d := decoder{b: b, off: 1}
	if m.Kind != KindBatch && len(fds) > 0 {
		return Message{}, fmt.Errorf("%w: %s with %d descriptors", ErrProtocol, m.Kind, len(fds))
	}
	switch m.Kind {
	case KindHello:
		if len(b) < 3 {
			return Message{}, fmt.Errorf("%w: HELLO of %d bytes", ErrProtocol, len(b))
		}
		m.Version = binary.LittleEndian.Uint16(b[1:])
		d.off = 3
		m.PID = int(d.uvarint())
	case KindBegin:
		m.PID = int(d.uvarint())
		if d.err == nil {
			m.Addr, d.off = string(b[d.off:]), len(b)
		}
	case KindRefuse:
		m.Reason, d.off = string(b[1:]), len(b)
	case KindClosed:
		m.Total = int(d.uvarint())
	case KindReady, KindCommit:
	case KindBatch:
		n := d.uvarint()
		if d.err == nil && n != uint64(len(fds)) {
			return Message{}, fmt.Errorf("%w: batch of %d records with %d descriptors", ErrProtocol, n, len(fds))
		}
		for i := uint64(0); i < n && d.err == nil; i++ {
			var c Conn
			k, err := c.Decode(b[d.off:])
			d.err, d.off = err, d.off+k
			m.Conns = append(m.Conns, c)
		}
		m.FDs = fds
	default:
		return Message{}, fmt.Errorf("%w: %s", ErrProtocol, m.Kind)
	}
	if d.err == nil && d.off != len(b) {
		d.err = fmt.Errorf("%w: %d bytes after %s", ErrProtocol, len(b)-d.off, m.Kind)
	}
	if d.err != nil {
		return Message{}, fmt.Errorf("%w: %w", ErrProtocol, d.err)
	}
	return m, nil
}

// parseRights returns the descriptors in a message's control data. On an
// error it returns those it read before it, which the caller closes, as it
// does when the message itself is refused.
func parseRights(oob []byte) ([]int, error) {
	if len(oob) == 0 {
		return nil, nil
	}
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil, fmt.Errorf("%w: control data: %w", ErrProtocol, err)
	}
	var fds []int
	for i := range msgs {
		if len(msgs[i].Data)%4 != 0 {
			// x/sys/unix's ParseUnixRights indexes past its result on a
			// partial descriptor.
			return fds, fmt.Errorf("%w: control data: %d bytes of descriptors", ErrProtocol, len(msgs[i].Data))
		}
		got, err := unix.ParseUnixRights(&msgs[i])
		if err != nil {
			return fds, fmt.Errorf("%w: control data: %w", ErrProtocol, err)
		}
		fds = append(fds, got...)
	}
	return fds, nil
}
