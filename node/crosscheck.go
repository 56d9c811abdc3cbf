package node

import (
	"encoding/binary"
	"fmt"
	"net"

	"switchboard/delivery"
	"switchboard/protocol"
)

// Sizes the checks across packages are made of, each taken from the code
// that produces the bytes.
const (
	// recordOverhead is the most a stored DELIVER record adds to its body
	// (gateway/loop.go builds it, protocol.Deliver.AppendRecord lays it
	// out): the header byte and four varints, from, msg id, group and time.
	recordOverhead = 1 + 4*binary.MaxVarintLen64
	// sendOverhead is the most a SEND frame adds to its body (header byte
	// and payload, as gateway.Config.MaxFrame counts): the header byte and
	// two varints, msg id and to.
	sendOverhead = 1 + 2*binary.MaxVarintLen64
	// seqLen is what a DELIVER frame adds to its record: the seq varint.
	seqLen = binary.MaxVarintLen64
)

// maxRecord is the largest record the gateway stores for a body of
// maxBody bytes.
func maxRecord(maxBody int) int { return maxBody + recordOverhead }

// maxEntry is what the gateway charges its outbound cap for the largest
// entry the router pushes (delivery.Outbound.Size of the largest record).
func maxEntry(maxBody int) int {
	o := delivery.Outbound{Kind: delivery.OutEntry, Record: make([]byte, maxRecord(maxBody))}
	return o.Size()
}

// crossCheck reports the limits of different packages that do not agree.
// c has its defaults applied. Each error names every setting involved and
// says which way to move them.
func crossCheck(c Config) []error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	g, d, s := c.Gateway, c.Delivery, c.Storage
	rec := maxRecord(g.MaxBody)

	// The gateway refuses a frame over MaxFrame before it reads the body:
	// a body of MaxBody must fit with its SEND header, or the largest
	// legal message is refused as FRAME_TOO_LARGE.
	if g.MaxBody+sendOverhead > g.MaxFrame {
		bad("gateway.max-frame (--max-frame) %s is below gateway.max-body (--max-body) %s plus a SEND header (%d bytes): a message of the largest body would be refused as too large a frame; raise --max-frame to %s or lower --max-body",
			formatSize(int64(g.MaxFrame)), formatSize(int64(g.MaxBody)), sendOverhead, formatSize(int64(g.MaxBody+sendOverhead)))
	}
	// A DELIVER of the largest record must fit the largest frame a client
	// is required to accept.
	if rec+seqLen > protocol.MaxServerFrame {
		bad("gateway.max-body (--max-body) %s: a DELIVER of it (%d bytes) passes the protocol's largest server frame of %s that clients accept; lower --max-body to %s",
			formatSize(int64(g.MaxBody)), rec+seqLen, formatSize(protocol.MaxServerFrame), formatSize(int64(protocol.MaxServerFrame-seqLen-recordOverhead)))
	}
	// The store keeps the record as one value.
	if s.MaxValueBytes < rec {
		bad("storage.max-value-bytes (--max-value-bytes) %s is below the record of a largest message (gateway.max-body (--max-body) %s + %d bytes = %d): every message that large would be refused; raise --max-value-bytes or lower --max-body",
			formatSize(int64(s.MaxValueBytes)), formatSize(int64(g.MaxBody)), recordOverhead, rec)
	}
	for _, q := range []struct {
		key string
		v   int64
	}{{"storage.mailbox-max-bytes (--mailbox-max-bytes)", s.MaxMailboxBytes}, {"storage.sender-max-bytes (--sender-max-bytes)", s.MaxSenderPendingBytes}, {"storage.store-max-bytes (--store-max-bytes)", s.MaxTotalBytes}} {
		if q.v < int64(rec) {
			bad("%s %s cannot hold one record of a largest message (gateway.max-body (--max-body) %s + %d bytes): such a message could never be stored",
				q.key, formatSize(q.v), formatSize(int64(g.MaxBody)), recordOverhead)
		}
	}
	// The router pushes entries while fewer than WindowBytes are
	// outstanding, and the last one may be the largest, so a reader that
	// does not read yet holds up to WindowBytes-1 plus the largest entry
	// (delivery/shard.go, pump and windowFull). The gateway closes a
	// connection whose queue passes OutboundCap as a slow consumer
	// (gateway/conn.go, Push): a reader draining a backlog would be closed
	// for doing nothing wrong.
	if need := d.WindowBytes - 1 + maxEntry(g.MaxBody) + protocol.MaxFrameHeader; g.OutboundCap < need {
		bad("gateway.outbound-cap (--outbound-cap) %s cannot hold a full delivery window: delivery.window-bytes (--window-bytes) %s plus the largest entry (gateway.max-body (--max-body) %s, charged %d bytes) needs %s; a reader with a backlog of large messages would be closed as a slow consumer; raise --outbound-cap or lower --window-bytes or --max-body",
			formatSize(int64(g.OutboundCap)), formatSize(int64(d.WindowBytes)), formatSize(int64(g.MaxBody)), maxEntry(g.MaxBody), formatSize(int64(need)))
	}
	// Listeners of one process on one address: the second fails at start.
	addrs := []struct{ key, addr string }{{"gateway.listen (--listen)", g.Addr}, {"metrics (--metrics)", c.Metrics}, {"pprof (--pprof)", c.Pprof}}
	for i := range addrs {
		for j := i + 1; j < len(addrs); j++ {
			if sameListener(addrs[i].addr, addrs[j].addr) {
				bad("%s and %s are both %s: each listener needs its own address", addrs[i].key, addrs[j].key, addrs[i].addr)
			}
		}
	}
	return errs
}

// sameListener reports whether two listen addresses would collide: equal
// and not on port 0 (which draws a fresh port each time).
func sameListener(a, b string) bool {
	if a == "" || b == "" {
		return false
	}
	_, pa, errA := net.SplitHostPort(a)
	_, pb, errB := net.SplitHostPort(b)
	if errA != nil || errB != nil || pa == "0" || pb == "0" {
		return false
	}
	return a == b
}
