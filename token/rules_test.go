package token_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"switchboard/token"
)

// Rules of doc.go a verifier must keep, each a test of its own: the
// shortest and the longest token, the device key's length, the order of
// the checks (the MAC before the expiry), and the claims of an expired
// token.

// verifiers returns Keys.VerifyKey and a Verifier's VerifyKey over keys,
// which must answer alike.
func verifiers(keys token.Keys) map[string]func(tok, key []byte, now time.Time) (token.Claims, error) {
	v := token.NewVerifier(keys)
	return map[string]func(tok, key []byte, now time.Time) (token.Claims, error){
		"Keys":     keys.VerifyKey,
		"Verifier": v.VerifyKey,
	}
}

// TestTokenLengths: a token of MinLen bytes (one-byte varints) and one of
// MaxLen (key_id and device 2^32-1, user and expiry of ten bytes) parse and
// verify.
func TestTokenLengths(t *testing.T) {
	secret := []byte("0123456789abcdef0123456789abcdef")
	for _, tt := range []struct {
		name   string
		claims token.Claims
		size   int
		now    time.Time
	}{
		{"shortest", token.Claims{KeyID: 0, User: 1, Device: 0, Expiry: time.Unix(100, 0)}, token.MinLen, time.Unix(99, 0)},
		{"longest", token.Claims{KeyID: 1<<32 - 1, User: 1<<64 - 1, Device: 1<<32 - 1, Expiry: time.Unix(-1, 0)}, token.MaxLen, time.Unix(-2, 0)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tok := token.Mint(secret, tt.claims)
			if len(tok) != tt.size {
				t.Fatalf("token of %d bytes, want %d", len(tok), tt.size)
			}
			if c, err := token.Parse(tok); err != nil || c != tt.claims {
				t.Fatalf("Parse = %+v, %v; want %+v", c, err, tt.claims)
			}
			for name, verify := range verifiers(token.Keys{tt.claims.KeyID: secret}) {
				if c, err := verify(tok, nil, tt.now); err != nil || c != tt.claims {
					t.Fatalf("%s: %+v, %v; want %+v", name, c, err, tt.claims)
				}
			}
		})
	}
}

// TestBoundKeyLength: a bound token is refused with a device key that is
// not KeyLen bytes, even the very key it was minted with.
func TestBoundKeyLength(t *testing.T) {
	secret := []byte("0123456789abcdef0123456789abcdef")
	now := time.Unix(1_800_000_000, 0)
	c := token.Claims{KeyID: 1, User: 42, Device: 7, Expiry: now.Add(time.Hour)}
	for _, n := range []int{token.KeyLen - 1, token.KeyLen + 1, 0} {
		key := bytes.Repeat([]byte{9}, n)
		tok := token.MintBound(secret, c, key)
		for name, verify := range verifiers(token.Keys{1: secret}) {
			_, err := verify(tok, key, now)
			if !errors.Is(err, token.ErrBad) || !strings.Contains(err.Error(), "device key not 32 bytes") {
				t.Errorf("%s: token bound to a key of %d bytes, with it: %v; want the key's length refused", name, n, err)
			}
		}
	}
}

// TestMACBeforeExpiry: a forged token past its expiry is refused as bad,
// with no claims, not as expired (doc.go: the MAC, then the expiry).
func TestMACBeforeExpiry(t *testing.T) {
	secret := []byte("0123456789abcdef0123456789abcdef")
	now := time.Unix(1_800_000_000, 0)
	forged := token.Mint([]byte("fedcba9876543210"), token.Claims{KeyID: 1, User: 42, Device: 7, Expiry: now.Add(-time.Hour)})
	for name, verify := range verifiers(token.Keys{1: secret}) {
		if c, err := verify(forged, nil, now); !errors.Is(err, token.ErrBad) || errors.Is(err, token.ErrExpired) || c != (token.Claims{}) {
			t.Errorf("%s: forged and expired: %+v, %v; want a MAC failure and no claims", name, c, err)
		}
	}
}

// TestExpiredKeepsClaims: an expired token is ErrExpired with its claims,
// so the gateway can say whose it was.
func TestExpiredKeepsClaims(t *testing.T) {
	secret := []byte("0123456789abcdef0123456789abcdef")
	now := time.Unix(1_800_000_000, 0)
	want := token.Claims{KeyID: 1, User: 42, Device: 7, Expiry: now.Add(-time.Second)}
	tok := token.Mint(secret, want)
	for name, verify := range verifiers(token.Keys{1: secret}) {
		if c, err := verify(tok, nil, now); !errors.Is(err, token.ErrExpired) || c != want {
			t.Errorf("%s: expired: %+v, %v; want ErrExpired with %+v", name, c, err, want)
		}
	}
}
