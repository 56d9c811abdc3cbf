package token_test

import (
	"bytes"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
	"time"

	"switchboard/token"
)

// TestTokens: a minted token verifies under its key (also while a newer key
// is in use: rotation), and every kind of damage is refused with the reason
// the gateway sends.
func TestTokens(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	old, cur := bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32)
	keys := token.Keys{1: old, 2: cur}
	claims := token.Claims{KeyID: 2, User: 42, Device: 7, Expiry: now.Add(time.Hour)}
	good := token.Mint(cur, claims)
	flip := func(i int) []byte { b := bytes.Clone(good); b[i] ^= 1; return b }
	tests := []struct {
		name   string
		token  []byte
		want   error
		reason string // what the error says after "token: bad token: "
	}{
		{name: "valid", token: good},
		{name: "valid under the old key", token: token.Mint(old, token.Claims{KeyID: 1, User: 42, Device: 7, Expiry: now.Add(time.Hour)})},
		{name: "expired", token: token.Mint(cur, token.Claims{KeyID: 2, User: 42, Expiry: now}), want: token.ErrExpired},
		{name: "wrong secret", token: token.Mint(old, claims), want: token.ErrBad, reason: "MAC does not verify"},
		{name: "unknown key id", token: token.Mint(cur, token.Claims{KeyID: 3, User: 42, Expiry: now.Add(time.Hour)}), want: token.ErrBad, reason: "unknown key id"},
		{name: "user 0", token: token.Mint(cur, token.Claims{KeyID: 2, User: 0, Expiry: now.Add(time.Hour)}), want: token.ErrBad, reason: "user 0"},
		{name: "user changed", token: flip(2), want: token.ErrBad, reason: "MAC does not verify"},
		{name: "mac changed", token: flip(len(good) - 1), want: token.ErrBad, reason: "MAC does not verify"},
		{name: "version changed", token: flip(0), want: token.ErrBad, reason: "malformed"},
		{name: "truncated", token: good[:len(good)-1], want: token.ErrBad, reason: "malformed"},
		{name: "trailing byte", token: append(bytes.Clone(good), 0), want: token.ErrBad, reason: "malformed"},
		{name: "empty", token: nil, want: token.ErrBad, reason: "malformed"},
	}
	v := token.NewVerifier(keys)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := keys.Verify(tt.token, now)
			if !errors.Is(err, tt.want) || (tt.want == nil && err != nil) {
				t.Fatalf("Verify = %v, want %v", err, tt.want)
			}
			if tt.reason != "" && err.Error() != "token: bad token: "+tt.reason {
				t.Fatalf("Verify = %q, want reason %q", err, tt.reason)
			}
			if tt.want == nil && (c.User != 42 || c.Device != 7 || !c.Expiry.Equal(now.Add(time.Hour))) {
				t.Fatalf("claims %+v", c)
			}
			c2, err2 := v.Verify(tt.token, now)
			if err2 != err || c2 != c {
				t.Fatalf("Verifier = %+v, %v; Keys.Verify %+v, %v", c2, err2, c, err)
			}
		})
	}
}

// TestNonMinimalVarintRefused: a token whose varint has a trailing zero
// group is refused as malformed even with a valid MAC, as the format
// (minimal varints, one encoding per token) says.
func TestNonMinimalVarintRefused(t *testing.T) {
	secret := bytes.Repeat([]byte{5}, 32)
	now := time.Unix(1_800_000_000, 0)
	exp := binaryUvarint(uint64(now.Add(time.Hour).Unix()))
	for _, tt := range []struct {
		name string
		body []byte // version and the four varints
	}{
		{name: "key_id 81 00", body: cat([]byte{1}, []byte{0x81, 0x00}, []byte{42}, []byte{1}, exp)},
		{name: "user 80 00 as 0", body: cat([]byte{1}, []byte{1}, []byte{0x80, 0x00}, []byte{1}, exp)},
		{name: "user aa 80 00", body: cat([]byte{1}, []byte{1}, []byte{0xaa, 0x80, 0x00}, []byte{1}, exp)},
		{name: "device 81 80 80 00", body: cat([]byte{1}, []byte{1}, []byte{42}, []byte{0x81, 0x80, 0x80, 0x00}, exp)},
		{name: "expiry padded", body: cat([]byte{1}, []byte{1}, []byte{42}, []byte{1}, padded(exp))},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tok := signed(secret, tt.body)
			if _, err := (token.Keys{1: secret}).Verify(tok, now); err == nil || err.Error() != "token: bad token: malformed" {
				t.Fatalf("Verify = %v, want malformed", err)
			}
			if _, err := token.Parse(tok); !errors.Is(err, token.ErrBad) {
				t.Fatalf("Parse = %v, want ErrBad", err)
			}
		})
	}
}

// TestParse: Parse reads the claims of a token whatever its MAC or expiry,
// and refuses one whose layout no server would accept.
func TestParse(t *testing.T) {
	exp := time.Unix(1_798_310_527, 0)
	want := token.Claims{KeyID: 1 << 31, User: 1<<64 - 1, Device: 1<<32 - 1, Expiry: exp}
	tok := token.Mint([]byte("any secret at all"), want)
	if len(tok) != 1+5+10+5+5+16 {
		t.Fatalf("token of %d bytes", len(tok))
	}
	got, err := token.Parse(tok)
	if err != nil || got != want {
		t.Fatalf("Parse = %+v, %v; want %+v", got, err, want)
	}
	over32 := signed(nil, cat([]byte{1}, binaryUvarint(1<<32), []byte{1}, []byte{1}, []byte{1}))
	for _, bad := range [][]byte{
		over32,
		signed(nil, cat([]byte{1}, []byte{1}, []byte{1}, binaryUvarint(1<<32), []byte{1})),
		signed(nil, cat([]byte{3}, []byte{1}, []byte{1}, []byte{1}, []byte{1})), // version 3
		signed(nil, cat([]byte{1}, []byte{1}, []byte{1}, []byte{1})),            // three fields
		signed(nil, cat([]byte{1}, []byte{1}, []byte{0}, []byte{1}, []byte{1})),
		bytes.Repeat([]byte{1}, token.MaxLen+1),
	} {
		if c, err := token.Parse(bad); !errors.Is(err, token.ErrBad) || c != (token.Claims{}) {
			t.Errorf("Parse(%x) = %+v, %v; want ErrBad and no claims", bad, c, err)
		}
	}
}

// TestAppend: Append adds the token after what dst holds and leaves that
// alone; Mint makes the same bytes.
func TestAppend(t *testing.T) {
	secret := []byte("0123456789abcdef0123456789abcdef")
	c := token.Claims{KeyID: 7, User: 123456789, Device: 1, Expiry: time.Unix(1_798_310_527, 0)}
	got := token.Append([]byte("prefix"), secret, c)
	want := token.Mint(secret, c)
	if !strings.HasPrefix(string(got), "prefix") || string(got[6:]) != string(want) {
		t.Fatalf("Append = %x, want prefix then %x", got, want)
	}
}

// TestVerifyAllocs: the event loops' Verifier and Parse allocate nothing,
// for a good token and a refused one.
func TestVerifyAllocs(t *testing.T) {
	keys := token.Keys{1: []byte("0123456789abcdef0123456789abcdef")}
	now := time.Unix(1_800_000_000, 0)
	good := token.Mint(keys[1], token.Claims{KeyID: 1, User: 7654321, Device: 3, Expiry: now.Add(time.Hour)})
	forged := token.Mint([]byte("fedcba9876543210"), token.Claims{KeyID: 1, User: 7654321, Device: 3, Expiry: now.Add(time.Hour)})
	v := token.NewVerifier(keys)
	for name, f := range map[string]func(){
		"Verifier good":   func() { _, _ = v.Verify(good, now) },
		"Verifier forged": func() { _, _ = v.Verify(forged, now) },
		"Parse":           func() { _, _ = token.Parse(good) },
	} {
		if n := testing.AllocsPerRun(100, f); n != 0 {
			t.Errorf("%s allocates %v times, want 0", name, n)
		}
	}
}

// TestMinted checks a token against the layout by hand: the bytes of
// docs/PROTOCOL.md 8.1's example.
func TestMinted(t *testing.T) {
	secret := make([]byte, 32)
	for i := range secret {
		secret[i] = byte(i)
	}
	got := token.Mint(secret, token.Claims{KeyID: 1, User: 7654321, Device: 1, Expiry: time.Unix(1798310527, 0)})
	const want = "0101b197d30301ff94c0d906b4c76909273d5f619fa14242c068cd8e"
	if hex.EncodeToString(got) != want {
		t.Fatalf("Mint = %x, want %s", got, want)
	}
}

// TestBound: a bound token verifies only with the device key it was minted
// for: not with another key, not with none (a plain login), and its
// claims say it is bound; an unbound token verifies with or without a
// key, and says it is not.
func TestBound(t *testing.T) {
	secret := []byte("0123456789abcdef0123456789abcdef")
	keys := token.Keys{1: secret}
	now := time.Unix(1_798_000_000, 0)
	c := token.Claims{KeyID: 1, User: 42, Device: 7, Expiry: now.Add(time.Hour)}
	device, other := bytes.Repeat([]byte{1}, token.KeyLen), bytes.Repeat([]byte{2}, token.KeyLen)
	bound := token.MintBound(secret, c, device)
	if len(bound) != len(token.Mint(secret, c)) || bound[0] != 2 {
		t.Fatalf("bound token % x: want version 2, as long as an unbound one", bound)
	}
	v := token.NewVerifier(keys)
	for _, verify := range []func(tok, key []byte) (token.Claims, error){
		func(tok, key []byte) (token.Claims, error) { return keys.VerifyKey(tok, key, now) },
		func(tok, key []byte) (token.Claims, error) { return v.VerifyKey(tok, key, now) },
	} {
		if got, err := verify(bound, device); err != nil || !got.Bound || got.User != 42 {
			t.Fatalf("bound token with its key: %+v, %v", got, err)
		}
		if _, err := verify(bound, other); !errors.Is(err, token.ErrBad) || !strings.Contains(err.Error(), "MAC") {
			t.Fatalf("bound token with another key: %v, want a MAC failure", err)
		}
		if _, err := verify(bound, nil); !errors.Is(err, token.ErrBad) || !strings.Contains(err.Error(), "Noise") {
			t.Fatalf("bound token without a key: %v, want it refused as bound", err)
		}
		if _, err := verify(bound, device[:31]); !errors.Is(err, token.ErrBad) {
			t.Fatalf("bound token with a short key: %v", err)
		}
		unbound := token.Mint(secret, c)
		for _, key := range [][]byte{nil, device} {
			if got, err := verify(unbound, key); err != nil || got.Bound {
				t.Fatalf("unbound token with key %x: %+v, %v", key, got, err)
			}
		}
	}
	if _, err := keys.Verify(bound, now); !errors.Is(err, token.ErrBad) {
		t.Fatalf("Verify of a bound token: %v, want ErrBad", err)
	}
}
