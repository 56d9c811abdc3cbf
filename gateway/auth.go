package gateway

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"time"
)

// A token proves a user's identity at login. The operator's backend mints it
// with a shared secret (or `switchboard token` does); the gateway verifies it
// before it accepts anything else. Its bytes:
//
//	+------+----------------+-------------+---------------+---------------+---------+
//	| 0x01 | key_id varint  | user varint | device varint | expiry varint | mac[16] |
//	+------+----------------+-------------+---------------+---------------+---------+
//
// expiry is Unix seconds; mac is the first 16 bytes of HMAC-SHA256 over
// everything before it, keyed with the secret named by key_id, so secrets
// can be rotated: the gateway holds the old and the new key for a while.
const (
	tokenVersion = 1
	macLen       = 16 // 128 bits: forging needs 2^128 guesses, each a connection
	// SecretLen is the length of a token secret.
	SecretLen = 32
)

// Token errors.
var (
	// ErrBadToken means a token is malformed, names an unknown key or fails its MAC.
	ErrBadToken = errors.New("gateway: bad token")
	// ErrTokenExpired means a token verified but is past its expiry.
	ErrTokenExpired = errors.New("gateway: token expired")
)

// Why a token is bad, for the ERROR's reason. Each wraps ErrBadToken and is
// made once, so a refused login allocates nothing for it.
var (
	errTokenMalformed = fmt.Errorf("%w: malformed", ErrBadToken)
	errTokenUser0     = fmt.Errorf("%w: user 0", ErrBadToken)
	errTokenKey       = fmt.Errorf("%w: unknown key id", ErrBadToken)
	errTokenMAC       = fmt.Errorf("%w: MAC does not verify", ErrBadToken)
)

// Claims are what a token asserts.
type Claims struct {
	KeyID  uint32
	User   uint64
	Device uint32
	Expiry time.Time
}

// Keys maps key ids to secrets. It is immutable once a Server is built.
type Keys map[uint32][]byte

// NewSecret returns a fresh random secret.
func NewSecret() ([]byte, error) {
	b := make([]byte, SecretLen)
	if _, err := rand.Read(b); err != nil {
		return nil, fmt.Errorf("gateway: making a secret: %w", err)
	}
	return b, nil
}

// MintToken returns a token for c signed with secret.
func MintToken(secret []byte, c Claims) []byte {
	b := []byte{tokenVersion}
	b = binary.AppendUvarint(b, uint64(c.KeyID))
	b = binary.AppendUvarint(b, c.User)
	b = binary.AppendUvarint(b, uint64(c.Device))
	b = binary.AppendUvarint(b, uint64(c.Expiry.Unix()))
	return append(b, mac(secret, b)...)
}

func mac(secret, msg []byte) []byte {
	h := hmac.New(sha256.New, secret)
	h.Write(msg)
	return h.Sum(nil)[:macLen]
}

// Verify checks token against keys at time now and returns its claims.
// It allocates a MAC per call; a Verifier reuses them.
func (k Keys) Verify(token []byte, now time.Time) (Claims, error) {
	return k.verify(token, now, func(_ uint32, secret, msg []byte) []byte { return mac(secret, msg) })
}

// Verifier checks tokens like Keys.Verify without allocating: it keeps one
// HMAC per key and reuses it. It is not safe for concurrent use; each event
// loop has its own, so a login makes no garbage for the GC to keep in RSS.
type Verifier struct {
	keys Keys
	macs map[uint32]hash.Hash
	sum  [sha256.Size]byte
}

// NewVerifier returns a Verifier of keys.
func NewVerifier(keys Keys) *Verifier {
	v := &Verifier{keys: keys, macs: make(map[uint32]hash.Hash, len(keys))}
	for id, secret := range keys {
		v.macs[id] = hmac.New(sha256.New, secret)
	}
	return v
}

// Verify checks token at time now and returns its claims.
func (v *Verifier) Verify(token []byte, now time.Time) (Claims, error) {
	return v.keys.verify(token, now, func(id uint32, _, msg []byte) []byte {
		h := v.macs[id]
		h.Reset()
		h.Write(msg)
		return h.Sum(v.sum[:0])[:macLen]
	})
}

// verify parses token and checks its MAC, which sign computes over the
// token's body with the secret of the key it names.
func (k Keys) verify(token []byte, now time.Time, sign func(keyID uint32, secret, msg []byte) []byte) (Claims, error) {
	if len(token) < 1+4+macLen || token[0] != tokenVersion {
		return Claims{}, errTokenMalformed
	}
	body, sum := token[:len(token)-macLen], token[len(token)-macLen:]
	var c Claims
	fields := [4]uint64{}
	rest := body[1:]
	for i := range fields {
		v, n := binary.Uvarint(rest)
		if n <= 0 {
			return Claims{}, errTokenMalformed
		}
		fields[i], rest = v, rest[n:]
	}
	if len(rest) != 0 || fields[0] > 1<<32-1 || fields[2] > 1<<32-1 {
		return Claims{}, errTokenMalformed
	}
	if fields[1] == 0 {
		return Claims{}, errTokenUser0
	}
	secret, ok := k[uint32(fields[0])]
	if !ok {
		return Claims{}, errTokenKey
	}
	if !hmac.Equal(sum, sign(uint32(fields[0]), secret, body)) {
		return Claims{}, errTokenMAC
	}
	c.KeyID, c.User, c.Device = uint32(fields[0]), fields[1], uint32(fields[2])
	c.Expiry = time.Unix(int64(fields[3]), 0)
	if !now.Before(c.Expiry) {
		return c, ErrTokenExpired
	}
	return c, nil
}
