package token_test

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"switchboard/token"
)

// FuzzParse: on any bytes Parse and both verifiers agree and do not panic,
// and a token Parse accepts has exactly one encoding: minting its claims
// in its layout (bound or not) gives back its bytes before the MAC.
func FuzzParse(f *testing.F) {
	secret := []byte("0123456789abcdef0123456789abcdef")
	now := time.Unix(1_800_000_000, 0)
	f.Add(token.Mint(secret, token.Claims{KeyID: 1, User: 7654321, Device: 1, Expiry: now.Add(time.Hour)}))
	f.Add(token.Mint(secret, token.Claims{KeyID: 1<<32 - 1, User: 1<<64 - 1, Device: 1<<32 - 1, Expiry: now}))
	f.Add(token.Mint(secret, token.Claims{KeyID: 2, User: 0, Device: 0, Expiry: now}))
	f.Add(token.MintBound(secret, token.Claims{KeyID: 1, User: 9, Device: 2, Expiry: now.Add(time.Hour)}, bytes.Repeat([]byte{7}, 32)))
	f.Add(signed(secret, []byte{1, 0x81, 0x00, 1, 1, 1}))
	f.Add([]byte{})
	f.Add(bytes.Repeat([]byte{0xff}, token.MaxLen))
	keys := token.Keys{1: secret, 2: []byte("fedcba9876543210")}
	v := token.NewVerifier(keys)
	f.Fuzz(func(t *testing.T, tok []byte) {
		in := bytes.Clone(tok)
		c, err := token.Parse(tok)
		kc, kerr := keys.Verify(tok, now)
		vc, verr := v.Verify(tok, now)
		if !bytes.Equal(tok, in) {
			t.Fatal("the token was modified")
		}
		if kc != vc || kerr != verr {
			t.Fatalf("Keys.Verify = %+v, %v; Verifier = %+v, %v", kc, kerr, vc, verr)
		}
		if err != nil {
			if !errors.Is(err, token.ErrBad) || c != (token.Claims{}) {
				t.Fatalf("Parse = %+v, %v", c, err)
			}
			if kerr != err {
				t.Fatalf("Parse refused with %v, Verify with %v", err, kerr)
			}
			return
		}
		if c.User == 0 || len(tok) < token.MinLen || len(tok) > token.MaxLen {
			t.Fatalf("Parse accepted %x as %+v", tok, c)
		}
		if kerr == nil || errors.Is(kerr, token.ErrExpired) {
			if kc != c {
				t.Fatalf("Verify claims %+v, Parse %+v", kc, c)
			}
		}
		// One encoding: the claims re-minted, in the token's layout, give
		// the same body (a bound token's MAC covers the key; its body does
		// not hold it).
		body := tok[:len(tok)-16]
		again := token.Mint(nil, c)
		if c.Bound {
			again = token.MintBound(nil, c, nil)
		}
		if !bytes.Equal(again[:len(again)-16], body) {
			t.Fatalf("Parse(%x) = %+v, which mints %x", tok, c, again)
		}
	})
}

// FuzzVerifyKey: a token checked against a device key, as a Noise login
// is, gives the same answer from Keys and from a Verifier, never a panic,
// and is accepted only when the bytes are the token minted bound to that
// very key (or a token bound to no key, which the bound rule of
// PROTOCOL.md lets through where the server allows it).
func FuzzVerifyKey(f *testing.F) {
	secret := []byte("0123456789abcdef0123456789abcdef")
	now := time.Unix(1_800_000_000, 0)
	device := bytes.Repeat([]byte{0x42}, 32)
	c := token.Claims{KeyID: 1, User: 7654321, Device: 1, Expiry: now.Add(time.Hour)}
	f.Add(token.MintBound(secret, c, device), device)
	f.Add(token.MintBound(secret, c, device), bytes.Repeat([]byte{0x43}, 32))
	f.Add(token.Mint(secret, c), device)
	f.Add([]byte{}, []byte{})
	keys := token.Keys{1: secret}
	v := token.NewVerifier(keys)
	f.Fuzz(func(t *testing.T, tok, key []byte) {
		kc, kerr := keys.VerifyKey(tok, key, now)
		vc, verr := v.VerifyKey(tok, key, now)
		if kc != vc || !errors.Is(kerr, verr) && !errors.Is(verr, kerr) {
			t.Fatalf("Keys.VerifyKey = %+v, %v; Verifier = %+v, %v", kc, kerr, vc, verr)
		}
		if kerr != nil {
			return
		}
		bound := token.MintBound(secret, kc, key)
		if !bytes.Equal(tok, bound) && !bytes.Equal(tok, token.Mint(secret, kc)) {
			t.Fatalf("VerifyKey accepted %x for key %x, which is neither the token bound to it nor an unbound one", tok, key)
		}
	})
}
