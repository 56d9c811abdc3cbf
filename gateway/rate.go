package gateway

import "time"

// The per-connection frame rate limit is a token bucket kept as one number
// per connection (the generic cell rate algorithm): conn.rateAt is the time
// at which the connection's bucket is full again, in microseconds of the
// server's clock (Config.Now since start), modulo 2^32. A frame costs
// rateLimit.cost; it is let through while the bucket holds that, that is
// while rateAt, after paying, is at most rateLimit.depth (Config.RateBurst
// frames) ahead of now.
//
// A frame that finds the bucket empty is over the rate: a SEND or GROUP is
// refused with RETRY_LATER and told how long until a token is there (each
// later frame over the rate moves that on a little), a
// SIGNAL is dropped (signals are never acknowledged), and a PING, READ or
// repeated ACK is handled anyway. It costs an eighth of a frame, pushing
// rateAt past the full depth: a compliant client, which waits out each
// retry_after, keeps about 8/9 of the rate, while one that goes on sending
// builds a debt and is closed with RATE_LIMITED when the debt passes an
// eighth of the depth: after about RateBurst frames over the rate at once,
// or when it sends more than nine times the rate for a while.
//
// rateAt is compared with now as a signed 32-bit difference, valid within
// 35 minutes; check pulls a stale rateAt forward (rateFreshen) before that.

// rateLimit is the bucket's parameters, in microseconds. cost 0: no limit.
type rateLimit struct {
	cost    uint32 // one frame: 1 s / Config.RateLimit
	refusal uint32 // one frame over the rate: cost/8, at least 1
	depth   uint32 // the bucket: Config.RateBurst frames
}

func newRateLimit(perSecond, burst int) rateLimit {
	cost := uint32(int64(time.Second/time.Microsecond) / int64(perSecond))
	if cost == 0 {
		return rateLimit{} // over a million frames a second: no limit
	}
	return rateLimit{cost: cost, refusal: max(cost/8, 1), depth: cost * uint32(burst)}
}

// Verdicts of charge.
const (
	rateOK    = iota // within the rate
	rateOver         // over it: refuse, drop or serve anyway, and count it
	rateClose        // far over it: close with RATE_LIMITED
)

// charge charges one frame arriving at now (µs) to the bucket *at and
// returns its verdict and, for rateOver, the milliseconds until a frame
// would be within the rate again.
func (r rateLimit) charge(at *uint32, now uint32) (verdict int, retryMs uint32) {
	if r.cost == 0 {
		return rateOK, 0
	}
	ahead := max(int64(int32(*at-now)), 0) // a full bucket gains nothing more
	if ahead+int64(r.cost) <= int64(r.depth) {
		*at = now + uint32(ahead) + r.cost
		return rateOK, 0
	}
	ahead += int64(r.refusal)
	*at = now + uint32(ahead)
	if ahead > int64(r.depth)+int64(r.depth/8) {
		return rateClose, 0
	}
	wait := ahead + int64(r.cost) - int64(r.depth) // µs until ahead+cost <= depth
	return rateOver, uint32((wait + 999) / 1000)
}

// rateFreshen keeps *at within the signed 32-bit range of now (µs): a bucket
// untouched for long is full, so pulling it forward to now changes nothing.
func rateFreshen(at *uint32, now uint32) {
	if int32(*at-now) < 0 {
		*at = now
	}
}

// rateFreshenEvery is how often (seconds) check refreshes a logged-in
// connection's rateAt: well within the 35 minutes the comparison spans.
const rateFreshenEvery = 20 * 60
