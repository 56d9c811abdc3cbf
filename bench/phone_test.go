package bench

import (
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"switchboard/delivery"
	"switchboard/protocol"
)

// lateProxy stands between the generator and a server and holds every
// frame the server sends for delay, ACCEPTs with the rest (in order), so
// that ACCEPTs come late. It watches the one-in-flight rule from outside:
// per connection, the msg ids of the SENDs it passed to the server and not
// yet answered by an ACCEPT it passed back. With an edit it plays a faulty
// server: it may change or drop a frame, or hang up.
type lateProxy struct {
	// Immutable after construction.
	ln     net.Listener
	server string
	delay  time.Duration
	// edit, when set, sees each of the server's frames when it is due
	// (raw is the proxy's own copy) and returns the bytes to pass on
	// instead (nil: none), and whether to close the client's connection
	// then, as a server that hangs up without an ERROR. Every
	// connection's goroutine calls it.
	edit func(f protocol.Frame, raw []byte) (out []byte, hangUp bool)

	mu           sync.Mutex
	conns        []net.Conn       // guarded by mu: closed at the end
	maxInFlight  int              // guarded by mu: most SENDs any one connection had unaccepted
	sends        int              // guarded by mu: SEND frames passed on
	clientErrors []protocol.Error // guarded by mu: the ERROR frames the clients sent
}

func startLateProxy(t *testing.T, server string, delay time.Duration) *lateProxy {
	t.Helper()
	return startProxy(t, server, delay, nil)
}

// startProxy starts a lateProxy with an edit (nil: none).
func startProxy(t *testing.T, server string, delay time.Duration, edit func(f protocol.Frame, raw []byte) ([]byte, bool)) *lateProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &lateProxy{ln: ln, server: server, delay: delay, edit: edit}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", server)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, s)
			p.mu.Unlock()
			unaccepted := map[uint64]bool{} // guarded by p.mu
			wg.Add(2)
			go func() { defer wg.Done(); p.upstream(c, s, unaccepted) }()
			go func() { defer wg.Done(); p.downstream(s, c, unaccepted) }()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		p.mu.Lock()
		for _, c := range p.conns {
			c.Close()
		}
		p.mu.Unlock()
		wg.Wait()
	})
	return p
}

func (p *lateProxy) addr() string { return p.ln.Addr().String() }

func (p *lateProxy) stats() (maxInFlight, sends int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.maxInFlight, p.sends
}

// upstream passes the client's bytes on at once, noting each SEND's msg id
// before the server can see it, and each ERROR.
func (p *lateProxy) upstream(client, server net.Conn, unaccepted map[uint64]bool) {
	defer server.Close()
	p.frames(client, protocol.PrefaceLen, func(f protocol.Frame, raw []byte) bool {
		if f.Type == protocol.TypeError {
			var e protocol.Error
			if e.Decode(f) == nil {
				p.mu.Lock()
				p.clientErrors = append(p.clientErrors, e)
				p.mu.Unlock()
			}
		}
		if f.Type == protocol.TypeSend {
			var s protocol.Send
			if s.Decode(f) == nil {
				p.mu.Lock()
				p.sends++
				unaccepted[s.MsgID] = true
				p.maxInFlight = max(p.maxInFlight, len(unaccepted))
				p.mu.Unlock()
			}
		}
		_, err := server.Write(raw)
		return err == nil
	})
}

// downstream holds each of the server's frames for delay, then forgets the
// ids an ACCEPT covers and passes the frame on: the client cannot see the
// ACCEPT before its ids are forgotten.
func (p *lateProxy) downstream(server, client net.Conn, unaccepted map[uint64]bool) {
	type held struct {
		due time.Time
		raw []byte
		f   protocol.Frame
	}
	// Bound: 4096 frames; the reader waits when the writer is that far behind.
	q := make(chan held, 4096)
	go func() {
		defer close(q)
		p.frames(server, 0, func(f protocol.Frame, raw []byte) bool {
			raw = append([]byte(nil), raw...)
			f.Payload = raw[len(raw)-len(f.Payload):]
			q <- held{due: time.Now().Add(p.delay), raw: raw, f: f}
			return true
		})
	}()
	defer client.Close()
	failed := false
	for h := range q {
		if failed {
			continue // drain, so the reader never blocks on a full queue
		}
		time.Sleep(time.Until(h.due)) // the fake's lateness, not a wait for an outcome
		if h.f.Type == protocol.TypeAccept {
			var a protocol.Accept
			if a.Decode(h.f) == nil {
				p.mu.Lock()
				for id := a.MsgID; id <= a.MsgID+a.More; id++ {
					delete(unaccepted, id)
				}
				p.mu.Unlock()
			}
		}
		out, hangUp := h.raw, false
		if p.edit != nil {
			out, hangUp = p.edit(h.f, h.raw)
		}
		if _, err := client.Write(out); err != nil || hangUp {
			client.Close()
			failed = true
		}
	}
}

// frames reads whole frames from c, after skip bytes passed on raw (the
// preface), and hands each to fn with its bytes until fn returns false or
// c ends. The frame and raw alias a buffer reused after fn returns.
func (p *lateProxy) frames(c net.Conn, skip int, fn func(f protocol.Frame, raw []byte) bool) {
	buf := make([]byte, 0, 64<<10)
	tmp := make([]byte, 32<<10)
	for {
		n, err := c.Read(tmp)
		buf = append(buf, tmp[:n]...)
		off := 0
		if skip > 0 && len(buf) >= skip {
			if !fn(protocol.Frame{}, buf[:skip]) {
				return
			}
			off, skip = skip, 0
		}
		for skip == 0 {
			f, m, ferr := protocol.ReadFrame(buf[off:], protocol.MaxServerFrame)
			if errors.Is(ferr, protocol.ErrIncomplete) {
				break
			}
			if ferr != nil || !fn(f, buf[off:off+m]) {
				return
			}
			off += m
		}
		buf = buf[:copy(buf, buf[off:])]
		if err != nil {
			return
		}
	}
}

// TestPhoneOneInFlight runs the phone scenario through a proxy that makes
// every ACCEPT late, so the senders fall behind their schedules: no
// connection may ever have two SENDs unaccepted, every slot's message is
// sent or counted unsent, and the wait for an ACCEPT is charged to the
// latency (timed from the slot, not from the late send).
func TestPhoneOneInFlight(t *testing.T) {
	tests := []struct {
		name  string
		delay time.Duration
		// Four senders at 20 msg/s for 1 s: a slot every 50 ms each, 80 in
		// all, then up to 1 s more to catch up.
		check func(t *testing.T, res *Result)
	}{
		{
			// 60 ms a message at least: 20 slots take each sender 1.2 s or
			// more, within the catch-up. The last slot (950 ms) goes out
			// at 1.2 s or later: charged 250 ms and more, 60 ms untimed.
			name: "late ACCEPTs caught up", delay: 60 * time.Millisecond,
			check: func(t *testing.T, res *Result) {
				if m := res.SendToAck.Max(); m < 200_000 {
					t.Errorf("send-to-ack max %d µs: the wait for the previous ACCEPT was not charged", m)
				}
			},
		},
		{
			// 250 ms a message at least: in the 2 s of sending and
			// catch-up each sender gets at most 9 of its 20 out.
			name: "ACCEPTs slower than the slots", delay: 250 * time.Millisecond,
			check: func(t *testing.T, res *Result) {
				if res.Sent > 36 || res.Unsent < 44 {
					t.Errorf("sent %d, unsent %d: want at most 9 sent per sender, the rest unsent", res.Sent, res.Unsent)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := startServer(t, delivery.Config{})
			px := startLateProxy(t, srv.addr, tt.delay)
			cfg := srv.config("phone")
			cfg.Addr = px.addr()
			cfg.Pairs, cfg.Rate, cfg.Duration = 2, 80, time.Second
			res := runOK(t, cfg)
			inFlight, sends := px.stats()
			t.Logf("sent %d, unsent %d, SENDs through the proxy %d, most unaccepted on one connection %d, send-to-ack p50 %d µs max %d µs",
				res.Sent, res.Unsent, sends, inFlight, res.SendToAck.ValueAtQuantile(50), res.SendToAck.Max())
			if inFlight != 1 {
				t.Errorf("a connection had %d SENDs unaccepted at once, want 1", inFlight)
			}
			if uint64(sends) != res.Sent {
				t.Errorf("%d SENDs passed the proxy, the generator sent %d", sends, res.Sent)
			}
			if res.Sent+res.Unsent != 80 {
				t.Errorf("sent %d + unsent %d, want the 80 slots", res.Sent, res.Unsent)
			}
			if res.Delivered != res.Sent || res.Accepted != res.Sent || res.Lost+res.Duplicates+res.Reordered != 0 {
				t.Errorf("sent %d, accepted %d, delivered %d, lost %d: want every message sent accepted and delivered once", res.Sent, res.Accepted, res.Delivered, res.Lost)
			}
			checkAllReceipted(t, res)
			if p50 := res.SendToAck.ValueAtQuantile(50); p50 < tt.delay.Microseconds() {
				t.Errorf("send-to-ack p50 %d µs, below the proxy's delay", p50)
			}
			// Every slot passed is counted, sent or not, and the wait for
			// the previous ACCEPT is the server's, not the generator's.
			if n := res.GeneratorLag.TotalCount(); n != 80 {
				t.Errorf("generator-lag samples %d, want the 80 slots", n)
			}
			if m := res.GeneratorLag.ValueAtQuantile(90); m >= tt.delay.Microseconds() {
				t.Errorf("generator lag p90 %d µs, at least the proxy's delay: the wait for an ACCEPT was counted as the generator's", m)
			}
			tt.check(t, res)
		})
	}
}
