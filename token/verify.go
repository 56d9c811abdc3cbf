package token

import (
	"crypto/hmac"
	"crypto/sha256"
	"hash"
	"time"
)

// Keys maps key ids to secrets. A server's keys are immutable once it is
// built.
type Keys map[uint32][]byte

// Verify checks tok against k at time now and returns its claims. A bad
// token's error wraps ErrBad and says why (malformed, user 0, unknown key
// id, MAC); an expired one is ErrExpired, returned with the claims. Verify
// allocates a MAC per call; a Verifier reuses them. It does not keep tok.
func (k Keys) Verify(tok []byte, now time.Time) (Claims, error) {
	return k.VerifyKey(tok, nil, now)
}

// VerifyKey is Verify for a login that proved the device key key (a Noise
// handshake's client static key; nil: none proved). A bound token
// verifies only with the key it is bound to; an unbound one verifies
// whatever key, and the caller decides whether it may log in so.
func (k Keys) VerifyKey(tok, key []byte, now time.Time) (Claims, error) {
	c, body, sum, err := parse(tok)
	if err != nil {
		return Claims{}, err
	}
	if err := boundKey(c, key); err != nil {
		return Claims{}, err
	}
	secret, ok := k[c.KeyID]
	if !ok {
		return Claims{}, errKey
	}
	h := hmac.New(sha256.New, secret)
	h.Write(body)
	if c.Bound {
		h.Write(key)
	}
	return check(c, sum, h.Sum(nil), now)
}

// boundKey checks that a bound token comes with a device key to check it
// against.
func boundKey(c Claims, key []byte) error {
	switch {
	case !c.Bound:
		return nil
	case key == nil:
		return errBound
	case len(key) != KeyLen:
		return errKeyLen
	}
	return nil
}

// Verifier checks tokens like Keys.Verify without allocating: it keeps one
// HMAC per key and reuses it. It is not safe for concurrent use; each of
// the gateway's event loops has its own, so a login makes no garbage for
// the GC to keep in RSS.
type Verifier struct {
	macs map[uint32]hash.Hash // by key id; immutable after NewVerifier
	sum  [sha256.Size]byte
}

// NewVerifier returns a Verifier of keys. It reads keys only now.
func NewVerifier(keys Keys) *Verifier {
	v := &Verifier{macs: make(map[uint32]hash.Hash, len(keys))}
	for id, secret := range keys {
		v.macs[id] = hmac.New(sha256.New, secret)
	}
	return v
}

// Verify checks tok at time now and returns its claims, as Keys.Verify.
func (v *Verifier) Verify(tok []byte, now time.Time) (Claims, error) {
	return v.VerifyKey(tok, nil, now)
}

// VerifyKey checks tok for a login that proved device key key, as
// Keys.VerifyKey.
func (v *Verifier) VerifyKey(tok, key []byte, now time.Time) (Claims, error) {
	c, body, sum, err := parse(tok)
	if err != nil {
		return Claims{}, err
	}
	if err := boundKey(c, key); err != nil {
		return Claims{}, err
	}
	h, ok := v.macs[c.KeyID]
	if !ok {
		return Claims{}, errKey
	}
	h.Reset()
	h.Write(body)
	if c.Bound {
		h.Write(key)
	}
	return check(c, sum, h.Sum(v.sum[:0]), now)
}

// check compares a token's MAC, sum, with the one computed, want (whole;
// only its first macLen bytes count), then its expiry with now.
func check(c Claims, sum, want []byte, now time.Time) (Claims, error) {
	if !hmac.Equal(sum, want[:macLen]) {
		return Claims{}, errMAC
	}
	if !now.Before(c.Expiry) {
		return c, ErrExpired
	}
	return c, nil
}
