package gateway

import (
	"time"

	"switchboard/delivery"
	"switchboard/protocol"
)

// Writing. Every byte a connection sends leaves through write: from flush
// (what read answered, in l.wbuf, then what the router pushed, encoded in
// order, entries with consecutive seqs packed into BATCH frames), from fail
// (the ERROR before a close), and from the GOAWAYs of token expiry and of
// shutdown (timeouts.go). The only other bytes are the ERROR of a
// connection refused at the cap, which gnet writes from OnOpen before the
// connection exists.

// maxBatchRecords bounds the record bytes packed into one BATCH, well under
// protocol.MaxServerFrame so a batch never needs splitting after encoding.
const maxBatchRecords = 64 << 10

// flush encodes what was pushed to c after what read answered, writes it,
// and returns the close code a worker asked for, or 0. Loop-only.
func (l *loop) flush(c *conn) protocol.Code {
	items, closing := c.take(l.items[:0])
	l.encode(c, items)
	clear(items)
	l.items = items[:0]
	if c.has(ackPending) {
		c.setFlag(ackPending, !l.srv.router().Ack(c.session(), delivery.To(c.user), c.acked))
	}
	if len(l.wbuf) > 0 {
		l.write(c, l.wbuf)
	}
	code := l.requested(closing)
	if code == 0 && c.gc.OutboundBuffered() > l.srv.cfg.OutboundCap {
		code = l.overWriteBuffer(c.gc.OutboundBuffered())
	}
	return code
}

// write writes b to c; b is copied, so the caller may reuse it. Loop-only.
func (l *loop) write(c *conn, b []byte) {
	if c.has(noiseOn) {
		l.writeSecure(c, b)
	} else {
		n, _ := c.gc.Write(b)
		l.srv.stats.BytesOut.Add(uint64(n))
	}
	l.wbuf = b[:0]
}

// encode appends the frames for items to l.wbuf, coalescing runs: entries
// with consecutive seqs into one BATCH, ACCEPTs of consecutive ids into one.
func (l *loop) encode(c *conn, items []delivery.Outbound) {
	now := l.srv.cfg.Now()
	for i := 0; i < len(items); {
		o := &items[i]
		j := i + 1
		switch o.Kind {
		case delivery.OutEntry:
			size, limit := len(o.Record), maxBatchRecords
			if c.has(noiseOn) {
				limit = noiseBatchRecords
			}
			for j < len(items) && items[j].Kind == delivery.OutEntry && items[j].Seq == items[j-1].Seq+1 && size+len(items[j].Record) <= limit {
				size += len(items[j].Record)
				j++
			}
			l.entries(c, items[i:j], now)
			c.delivered = max(c.delivered, items[j-1].Seq)
		case delivery.OutAccept:
			for j < len(items) && items[j].Kind == delivery.OutAccept && items[j].MsgID == items[j-1].MsgID+1 && o.Ref == 0 && items[j].Ref == 0 {
				j++
			}
			a := protocol.Accept{MsgID: o.MsgID, More: uint64(j - i - 1), Ref: o.Ref}
			l.wbuf = a.Append(l.wbuf)
		case delivery.OutRefuse:
			l.refuse(c, o.MsgID, o.Code, o.RetryAfter, o.Reason)
		case delivery.OutSignal:
			s := protocol.Signal{Peer: o.Peer, Kind: uint32(o.MsgID), Group: o.Ref}
			l.wbuf = s.Append(l.wbuf)
		case delivery.OutWelcome:
			w := protocol.Welcome{
				Version: protocol.Version, User: c.user, Time: uint64(now.UnixMilli()),
				Ping: uint32(c.ping), MaxFrame: uint32(l.maxFrameOf(c)), Dict: l.dictOf(c),
				Window: uint32(l.srv.router().Window()), Last: o.Seq,
			}
			l.wbuf = w.Append(l.wbuf)
			// Seqs up to last may be acknowledged, delivered or not: some
			// expired or were never stored (PROTOCOL.md, "Seqs may skip").
			c.delivered = max(c.delivered, o.Seq)
			c.state = stateReady
			// c waits on the wheel for its handshake deadline; with a short
			// ping the idle deadline can come first.
			l.checkBy(c, c.lastRecv+uint32(c.ping)*3/2+stampSlack)
			l.checkBy(c, c.expires)
		}
		l.srv.stats.FramesOut.Add(1)
		i = j
	}
}

// entries appends one DELIVER (or RECEIPT, GROUP_EVENT) frame, or a BATCH
// for several consecutive entries. A delivery made within a second of its
// acceptance goes without its timestamp (the client knows the time).
func (l *loop) entries(c *conn, items []delivery.Outbound, now time.Time) {
	// Time is left out of an entry sent within about a second of its
	// acceptance (protocol.Live), whichever path it took.
	var d protocol.Deliver
	var g protocol.GroupEvent
	if len(items) == 1 {
		o := &items[0]
		f, err := protocol.ParseRecord(o.Record)
		switch {
		case err != nil:
			l.badRecord(o, err)
		case f.Type == protocol.TypeDeliver:
			if err := d.DecodeRecord(f, o.Seq); err != nil {
				l.badRecord(o, err)
				return
			}
			if protocol.Live(d.Time, now) {
				d.Time = 0
			}
			l.wbuf = d.Append(l.wbuf)
		case f.Type == protocol.TypeGroupEvent:
			if err := g.DecodeRecord(f, o.Seq); err != nil {
				l.badRecord(o, err)
				return
			}
			if protocol.Live(g.Time, now) {
				g.Time = 0
			}
			l.wbuf = g.Append(l.wbuf)
		default:
			l.wbuf = protocol.AppendRecordFrame(l.wbuf, f, o.Seq)
		}
		return
	}
	l.batch.Reset(items[0].Seq)
	for k := range items {
		o := &items[k]
		f, err := protocol.ParseRecord(o.Record)
		if err == nil && f.Type == protocol.TypeDeliver {
			if err = d.DecodeRecord(f, o.Seq); err == nil {
				if protocol.Live(d.Time, now) {
					d.Time = 0
				}
				l.batch.Deliver(&d)
				continue
			}
		}
		if err == nil && f.Type == protocol.TypeGroupEvent {
			if err = g.DecodeRecord(f, o.Seq); err == nil {
				if protocol.Live(g.Time, now) {
					g.Time = 0
				}
				l.batch.GroupEvent(&g)
				continue
			}
		}
		if err == nil {
			err = l.batch.Record(f, o.Seq)
		}
		if err != nil {
			// A record that does not parse cannot be sent; keep the batch's
			// seqs consecutive by ending it here and skipping this one.
			l.badRecord(o, err)
			l.appendBatch(c)
			if k+1 < len(items) {
				l.entries(c, items[k+1:], now)
			}
			return
		}
	}
	l.appendBatch(c)
}

// appendBatch appends the batch being built, compressed when c negotiated a
// dictionary and it pays: backlogs of plaintext compress about 2×.
func (l *loop) appendBatch(c *conn) {
	if l.batch.Count() == 0 {
		return
	}
	var codec *protocol.Codec
	if c.has(dictOn) {
		codec = l.srv.codec
	}
	l.wbuf = codec.AppendFrame(l.wbuf, protocol.TypeBatch, 0, l.batch.Payload())
}

// dictOf returns the dictionary id c's WELCOME names.
func (l *loop) dictOf(c *conn) uint32 {
	if c.has(dictOn) {
		return l.srv.codec.ID()
	}
	return protocol.DictNone
}

func (l *loop) badRecord(o *delivery.Outbound, err error) {
	l.srv.cfg.Logger.Error("gateway: unreadable stored record skipped", "seq", o.Seq, "err", err)
}
