package token

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// The layout's constants (doc.go draws the token).
const (
	version      = 1
	versionBound = 2 // bound to a device key: the MAC covers it too
	// KeyLen is the length of the device key a bound token names: a
	// Curve25519 public key, the device's Noise static key.
	KeyLen = 32
	macLen = 16 // 128 bits: forging needs 2^128 guesses, each a connection
	// MinLen is the length of the shortest token: the version, four
	// one-byte varints and the MAC.
	MinLen = 1 + 4 + macLen
	// MaxLen is the length of the longest token: key_id and device take at
	// most 5 varint bytes (32 bits), user and expiry 10 (64 bits).
	MaxLen = 1 + 5 + 10 + 5 + 10 + macLen
)

// Errors of Parse and Verify.
var (
	// ErrBad means a token is malformed, names an unknown key or fails its
	// MAC. The error returned wraps it and says which.
	ErrBad = errors.New("token: bad token")
	// ErrExpired means a token verified but is past its expiry.
	ErrExpired = errors.New("token: expired")
)

// Why a token is bad, for the ERROR's reason. Each wraps ErrBad and is made
// once, so a refused login allocates nothing for it.
var (
	errMalformed = fmt.Errorf("%w: malformed", ErrBad)
	errUser0     = fmt.Errorf("%w: user 0", ErrBad)
	errKey       = fmt.Errorf("%w: unknown key id", ErrBad)
	errMAC       = fmt.Errorf("%w: MAC does not verify", ErrBad)
	errBound     = fmt.Errorf("%w: bound to a device key, which only a Noise login proves", ErrBad)
	errKeyLen    = fmt.Errorf("%w: device key not %d bytes", ErrBad, KeyLen)
)

// Claims are what a token asserts. The zero value asserts nothing a
// verifier accepts (user 0).
type Claims struct {
	KeyID  uint32    // the key the token is signed with
	User   uint64    // the user it logs in as, not 0
	Device uint32    // the user's device
	Expiry time.Time // whole seconds; the token is valid before it
	// Bound says the token is bound to a device key (layout version 2):
	// it logs in only over the Noise transport, whose handshake proves
	// that key. Mint ignores it; MintBound sets it.
	Bound bool
}

// Mint returns a new token for c signed with secret, the key c.KeyID
// names. It does not check c: a token for user 0 is minted, and refused by
// Verify.
func Mint(secret []byte, c Claims) []byte {
	return Append(make([]byte, 0, MaxLen+sha256.Size-macLen), secret, c)
}

// Append appends to dst a token for c signed with secret, like Mint, and
// returns the extended slice. It allocates the HMAC.
func Append(dst, secret []byte, c Claims) []byte {
	return appendToken(dst, secret, c, version, nil)
}

// MintBound returns a new token for c bound to the device key key (its
// Noise static public key, KeyLen bytes): the MAC covers key too, so the
// token logs in only over a Noise handshake that proves key, and a stolen
// token alone logs in nowhere.
func MintBound(secret []byte, c Claims, key []byte) []byte {
	return AppendBound(make([]byte, 0, MaxLen+sha256.Size-macLen), secret, c, key)
}

// AppendBound appends to dst a token for c bound to key, like MintBound.
func AppendBound(dst, secret []byte, c Claims, key []byte) []byte {
	return appendToken(dst, secret, c, versionBound, key)
}

func appendToken(dst, secret []byte, c Claims, v byte, key []byte) []byte {
	start := len(dst)
	dst = append(dst, v)
	dst = binary.AppendUvarint(dst, uint64(c.KeyID))
	dst = binary.AppendUvarint(dst, c.User)
	dst = binary.AppendUvarint(dst, uint64(c.Device))
	dst = binary.AppendUvarint(dst, uint64(c.Expiry.Unix()))
	h := hmac.New(sha256.New, secret)
	h.Write(dst[start:])
	h.Write(key)
	end := len(dst) + macLen
	return h.Sum(dst)[:end]
}

// Parse returns the claims of tok without checking its MAC or expiry, for
// tools that show a token; only Verify says whether a server accepts it.
// It refuses what no server would accept whatever its keys: a token that
// does not follow the layout (an error wrapping ErrBad, "malformed") or
// names user 0. It does not keep tok and allocates nothing.
func Parse(tok []byte) (Claims, error) {
	c, _, _, err := parse(tok)
	return c, err
}

// parse splits tok into its claims, the body the MAC covers, and the MAC.
func parse(tok []byte) (c Claims, body, sum []byte, err error) {
	if len(tok) < MinLen || len(tok) > MaxLen || (tok[0] != version && tok[0] != versionBound) {
		return Claims{}, nil, nil, errMalformed
	}
	body, sum = tok[:len(tok)-macLen], tok[len(tok)-macLen:]
	var f [4]uint64 // key_id, user, device, expiry
	rest := body[1:]
	for i := range f {
		x, n := binary.Uvarint(rest)
		if n <= 0 || (n > 1 && rest[n-1] == 0) { // missing, overflowing, or not minimal
			return Claims{}, nil, nil, errMalformed
		}
		f[i], rest = x, rest[n:]
	}
	if len(rest) != 0 || f[0] > 1<<32-1 || f[2] > 1<<32-1 {
		return Claims{}, nil, nil, errMalformed
	}
	if f[1] == 0 {
		return Claims{}, nil, nil, errUser0
	}
	c = Claims{KeyID: uint32(f[0]), User: f[1], Device: uint32(f[2]), Expiry: time.Unix(int64(f[3]), 0), Bound: tok[0] == versionBound}
	return c, body, sum, nil
}
