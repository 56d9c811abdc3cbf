package gateway

import (
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"time"

	"switchboard/noise"
	"switchboard/protocol"
	"switchboard/token"
)

// Config configures a Server. The zero value of each field selects its
// default, except Keys, which is required.
type Config struct {
	// Addr is the TCP address to listen on, host:port. Default 127.0.0.1:7070.
	Addr string
	// Loops is the number of event loops. Default: DefaultLoops, one per
	// core but one.
	Loops int
	// Keys verify login tokens. Required.
	Keys token.Keys
	// MaxConns caps open connections; one more is refused with SERVER_FULL.
	// Default 0: as many as the open-file limit allows. Whatever its value,
	// a connection is also refused while the open connections would pass
	// the open-file limit minus the reserve for other files (filelimit.go),
	// so accept never meets EMFILE, which would stop the whole engine. The
	// reserve grows with the store, so the cap in force (Stats.ConnCap) may
	// fall below MaxConns; a MaxConns above what the limit allows when New
	// runs is an error (ErrFileLimit).
	MaxConns int
	// FDHeadroom is the fixed part of the descriptors kept free beyond
	// those open besides connections; a quarter of those is added to it.
	// Default 64: what a small store may open between two counts, a second
	// apart (filelimit.go).
	FDHeadroom int
	// OpenFiles returns how many descriptors the process has open. New
	// calls it once, then gnet's ticker goroutine once a second; never an
	// event loop. Default: the count of /proc/self/fd. An error from New's
	// call fails New; a later one keeps the cap where it was.
	OpenFiles func() (int, error)
	// Inherited is how many sockets of connections to adopt (Adopt) the
	// process holds already when New runs: they count as connections,
	// not as other files in the reserve. Not a setting: package node sets
	// it in a takeover.
	Inherited int
	// Beside makes Run listen beside a server running on Addr (a takeover:
	// both listen with SO_REUSEPORT until the old one exits) instead of
	// refusing an address in use. Not a setting: package node sets it.
	Beside bool
	// HandshakeTimeout is how long a connection may take to send the preface
	// and a valid LOGIN. Default 10 s: a slow mobile link's TCP and first
	// round trips, with margin.
	HandshakeTimeout time.Duration
	// HandshakeTimeoutBusy replaces HandshakeTimeout for a connection
	// opened while more than half of its loop's share of MaxPreLogin are
	// waiting to log in (admit.go). Default 3 s: three round trips of a
	// slow mobile link with margin. At most HandshakeTimeout.
	HandshakeTimeoutBusy time.Duration
	// MaxPreLogin caps the connections that have not logged in, in shares
	// of one per loop; past its share a loop closes its oldest one waiting
	// to make room for the newest (admit.go). Default: a quarter of the
	// connection cap in force at New (at least 64 a loop), so sockets that
	// never log in can hold at most a quarter of the slots.
	MaxPreLogin int
	// PartialFrameTimeout is how long a started frame may go without a new
	// byte. Default 10 s: a mobile link's stall between two cells, while a
	// half-sent frame pins its bytes in a read buffer.
	PartialFrameTimeout time.Duration
	// PartialFrameMinRate, in bytes per second, is the slowest a frame may
	// arrive averaged from its first byte, after one PartialFrameTimeout of
	// grace, however steady; slower is closed like a stall
	// (PARTIAL_FRAME_TIMEOUT). Default 512 B/s: a largest frame (66,560
	// bytes) may take 140 s, a 2G uplink sends ten times faster, and a
	// slow sender cannot pin a buffer for longer than that.
	PartialFrameMinRate int
	// PingDefault is the ping interval granted when LOGIN asks for 0.
	// Default 120 s: NAT mappings on mobile networks outlive it, and a
	// phone's radio wakes rarely.
	PingDefault time.Duration
	// PingMin and PingMax bound the interval a client may ask for.
	// Defaults 10 s and 600 s.
	PingMin, PingMax time.Duration
	// MaxFrame is the largest frame accepted from a client, compressed or
	// decompressed. Default protocol.MaxFrame.
	MaxFrame int
	// MaxBody is the largest message body accepted. Default protocol.MaxBody.
	MaxBody int
	// OutboundCap caps a connection's unsent bytes; a connection over it is
	// closed as a slow consumer (its messages stay in storage). Default
	// 256 KiB: a full flow window of small messages with room to spare.
	OutboundCap int
	// RateLimit is the most frames a connection may send per second,
	// sustained; every frame but an ACK that advances counts (rate.go).
	// Over it a SEND or GROUP is refused with RETRY_LATER and the time
	// until a token is there, a SIGNAL is dropped, and a connection that
	// goes on far past it is closed with RATE_LIMITED. Default 1000: far
	// above what a person types or a phone's one-in-flight sender needs
	// (its rate is one over the round trip), low enough that one connection
	// cannot starve a loop. Above 1,000,000: no limit.
	RateLimit int
	// RateBurst is how many frames a connection may send at once above
	// RateLimit: the token bucket's depth. Default 2 × RateLimit (2,000): a
	// reconnect resends what was not acknowledged (up to a window, 256, of
	// SENDs) plus its pipelined traffic without a refusal. At most
	// 600 × RateLimit.
	RateBurst int
	// DisableCompression stops the server from offering its dictionary at
	// login; clients then send and receive every frame uncompressed. By
	// default dictionary v1 is offered and BATCH frames are compressed when
	// that makes them smaller.
	DisableCompression bool
	// HomeAddr returns, for a user whose LOGIN token verified, the client
	// address (host:port) of the node that homes the user's mailbox when
	// that is not this node, and "" when this node serves the user. A
	// login given an address is answered GOAWAY MOVED (PROTOCOL.md 8.10)
	// and closed, before the router sees it. Called on an event loop once
	// per LOGIN: it must not block. Default nil: this node serves every
	// user (a single node).
	HomeAddr func(user uint64) string
	// GoAwayAfter is the shortest reconnect window told to clients in the
	// GOAWAY at shutdown: each client reconnects after a random delay in
	// [0, window] (PROTOCOL.md 8.10). Default 2 s: a server with few
	// clients still spreads them over a couple of seconds. At most 10
	// minutes (maxGoAwayWindow, timeouts.go), the longest window.
	GoAwayAfter time.Duration
	// GoAwayRate, in logins per second, sizes that window to what a server
	// accepts: at shutdown the window is the connections open divided by
	// GoAwayRate, in seconds, when that is longer than GoAwayAfter, and at
	// most 10 minutes. Default 10,000: below the 13,000 or more plain
	// logins a second a 2-core host takes (BENCHMARKS.md), so the clients
	// of a stopped server come back no faster than it accepts them. A
	// Noise handshake costs about ten times as much (some 1,500 a second
	// on such a host): where clients use Noise, set it lower.
	GoAwayRate int
	// ShutdownTimeout bounds a graceful stop: what has not finished by then
	// (the router's commits in flight, which package node gives three
	// quarters of it, a loop's GOAWAYs, the engine's stop) is logged and
	// left. Default 10 s: the commits in flight take a few disk
	// syncs and the GOAWAYs one write per connection, so this is only ever
	// reached when something hangs, and an orchestrator's grace period
	// (30 s for Kubernetes) leaves room for closing the store after it.
	ShutdownTimeout time.Duration
	// NoiseKeys are the server's Noise static keys, current first
	// (noise.LoadKeys): with them the Noise transport (preface transports
	// 1 and 2, PROTOCOL.md 3.1) is offered. nil: it is not, and such a
	// preface is refused with UNSUPPORTED_TRANSPORT.
	NoiseKeys []noise.Keypair
	// RefusePlain refuses the plain transport (preface transport 0) with
	// UNSUPPORTED_TRANSPORT: only Noise connections are served. It needs
	// NoiseKeys. Default false.
	RefusePlain bool
	// NoiseUnboundTokens lets a Noise login use a token that is not bound
	// to the device's key (token.Mint rather than token.MintBound). Default
	// false: over Noise, a stolen token alone logs in nowhere.
	NoiseUnboundTokens bool
	// MaxHandshakes bounds the Noise handshake steps waiting for or
	// running on a worker; past it a new handshake is refused with GOAWAY
	// RETRY_LATER. One already started is finished (its later steps wait
	// in a queue of their own, taken first). Default 1024: at about 0.4 ms
	// of CPU a step, the workers' backlog of a second or two.
	MaxHandshakes int
	// HandshakeWorkers is how many goroutines run handshake steps. Default
	// GOMAXPROCS.
	HandshakeWorkers int
	// Logger receives the server's logs. Default slog.Default().
	Logger *slog.Logger
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// DefaultLoops is how many event loops a server runs unless told: one per
// core (GOMAXPROCS) but one, and at least one. A loop waits for its
// sockets in epoll_wait holding one of the Go runtime's processors. With as
// many loops as processors, all of them can be waiting there at once, and
// a goroutine made runnable meanwhile (a commit's completion, a shard's next
// request) waits until the runtime's monitor takes a processor back, which
// after a quiet spell it does only every 10 ms. With a processor to spare
// it runs at once: on 2 cores, one loop instead of two cut the p99 from
// SEND to ACCEPT at 300 msg/s from 7.5-8.0 ms to 2.1-2.4 ms, and the CPU
// per message at 1,000-2,000 msg/s to 0.6 times, and the closed loops
// carried as much (docs/BENCHMARKS.md, "A processor to spare").
func DefaultLoops() int { return max(1, runtime.GOMAXPROCS(0)-1) }

func (c *Config) setDefaults() {
	if c.Addr == "" {
		c.Addr = "127.0.0.1:7070"
	}
	if c.Loops == 0 {
		c.Loops = DefaultLoops()
	}
	if c.FDHeadroom == 0 {
		c.FDHeadroom = defaultFDHeadroom
	}
	if c.OpenFiles == nil {
		c.OpenFiles = countOpenFiles
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&c.HandshakeTimeout, 10*time.Second)
	def(&c.PartialFrameTimeout, 10*time.Second)
	def(&c.HandshakeTimeoutBusy, defaultHandshakeTimeoutBusy)
	c.HandshakeTimeoutBusy = min(c.HandshakeTimeoutBusy, c.HandshakeTimeout)
	def(&c.PingDefault, 120*time.Second)
	def(&c.PingMin, 10*time.Second)
	def(&c.PingMax, 600*time.Second)
	def(&c.GoAwayAfter, 2*time.Second)
	if c.GoAwayRate == 0 {
		c.GoAwayRate = 10000
	}
	def(&c.ShutdownTimeout, 10*time.Second)
	if c.PartialFrameMinRate == 0 {
		c.PartialFrameMinRate = 512
	}
	if c.MaxFrame == 0 {
		c.MaxFrame = protocol.MaxFrame
		if len(c.NoiseKeys) > 0 {
			c.MaxFrame = NoiseMaxFrame // every frame fits one transport message
		}
	}
	if c.MaxBody == 0 {
		c.MaxBody = min(protocol.MaxBody, c.MaxFrame-1024)
	}
	if c.MaxHandshakes == 0 {
		c.MaxHandshakes = 1024
	}
	if c.HandshakeWorkers == 0 {
		c.HandshakeWorkers = runtime.GOMAXPROCS(0)
	}
	if c.OutboundCap == 0 {
		c.OutboundCap = 256 << 10
	}
	if c.RateLimit == 0 {
		c.RateLimit = 1000
	}
	if c.RateBurst == 0 {
		c.RateBurst = 2 * c.RateLimit
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// validate reports every invalid field at once.
func (c *Config) validate() error {
	var errs []error
	check := func(ok bool, format string, args ...any) {
		if !ok {
			errs = append(errs, fmt.Errorf("gateway: "+format, args...))
		}
	}
	check(len(c.Keys) > 0, "Keys: at least one token key is required")
	check(c.Loops > 0, "Loops %d must be positive", c.Loops)
	check(c.MaxConns >= 0, "MaxConns %d must not be negative", c.MaxConns)
	check(c.FDHeadroom > 0, "FDHeadroom %d must be positive", c.FDHeadroom)
	check(c.HandshakeTimeout >= time.Second, "HandshakeTimeout %v must be at least 1s", c.HandshakeTimeout)
	// Clamped to HandshakeTimeout, it fails with it: that check says why.
	check(c.HandshakeTimeoutBusy >= time.Second || c.HandshakeTimeoutBusy == c.HandshakeTimeout, "HandshakeTimeoutBusy %v must be at least 1s", c.HandshakeTimeoutBusy)
	check(c.MaxPreLogin >= 0, "MaxPreLogin %d must not be negative", c.MaxPreLogin)
	check(c.PartialFrameTimeout >= time.Second, "PartialFrameTimeout %v must be at least 1s", c.PartialFrameTimeout)
	check(c.PartialFrameMinRate > 0, "PartialFrameMinRate %d must be positive", c.PartialFrameMinRate)
	check(c.PingMin >= time.Second && c.PingMin <= c.PingDefault && c.PingDefault <= c.PingMax,
		"ping intervals must satisfy 1s <= PingMin (%v) <= PingDefault (%v) <= PingMax (%v)", c.PingMin, c.PingDefault, c.PingMax)
	check(c.PingMax <= 3600*time.Second, "PingMax %v must be at most 1h", c.PingMax)
	check(c.MaxFrame >= 64 && c.MaxFrame <= protocol.MaxServerFrame, "MaxFrame %d must be in [64, %d]", c.MaxFrame, protocol.MaxServerFrame)
	check(c.MaxBody > 0 && c.MaxBody < c.MaxFrame, "MaxBody %d must be positive and below MaxFrame %d", c.MaxBody, c.MaxFrame)
	check(len(c.NoiseKeys) == 0 || c.MaxFrame <= NoiseMaxFrame, "MaxFrame %d must be at most %d with the Noise transport (a frame fits one transport message)", c.MaxFrame, NoiseMaxFrame)
	check(!c.RefusePlain || len(c.NoiseKeys) > 0, "RefusePlain needs NoiseKeys: no transport would be left")
	check(c.MaxHandshakes > 0 && c.HandshakeWorkers > 0, "MaxHandshakes %d and HandshakeWorkers %d must be positive", c.MaxHandshakes, c.HandshakeWorkers)
	check(c.OutboundCap >= 4096, "OutboundCap %d must be at least 4096", c.OutboundCap)
	check(c.ShutdownTimeout > 0, "ShutdownTimeout %v must be positive", c.ShutdownTimeout)
	check(c.GoAwayAfter >= time.Millisecond && c.GoAwayAfter <= maxGoAwayWindow, "GoAwayAfter %v must be in [1ms, %v]", c.GoAwayAfter, maxGoAwayWindow)
	check(c.GoAwayRate > 0, "GoAwayRate %d must be positive (logins a second the reconnect window is sized to)", c.GoAwayRate)
	check(c.RateLimit > 0, "RateLimit %d must be positive", c.RateLimit)
	check(c.RateBurst > 0 && c.RateBurst/600 <= c.RateLimit, "RateBurst %d must be positive and at most 600 × RateLimit %d", c.RateBurst, c.RateLimit)
	return errors.Join(errs...)
}
