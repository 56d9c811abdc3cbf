package gateway_test

import (
	"errors"
	"testing"
	"time"

	"switchboard/gateway"
)

// TestVerifierMatchesKeys: the loops' allocation-free Verifier reaches the
// same verdict and claims as Keys.Verify, and allocates nothing.
func TestVerifierMatchesKeys(t *testing.T) {
	keys := gateway.Keys{1: []byte("0123456789abcdef0123456789abcdef"), 2: []byte("fedcba9876543210fedcba9876543210")}
	now := time.Unix(1_800_000_000, 0)
	good := gateway.MintToken(keys[2], gateway.Claims{KeyID: 2, User: 7654321, Device: 3, Expiry: now.Add(time.Hour)})
	tampered := append([]byte(nil), good...)
	tampered[3] ^= 1
	unknown := gateway.MintToken(keys[1], gateway.Claims{KeyID: 9, User: 1, Device: 1, Expiry: now.Add(time.Hour)})
	expired := gateway.MintToken(keys[1], gateway.Claims{KeyID: 1, User: 5, Device: 1, Expiry: now.Add(-time.Second)})
	v := gateway.NewVerifier(keys)
	for _, tc := range []struct {
		name    string
		token   []byte
		wantErr error
	}{
		{"good", good, nil},
		{"tampered", tampered, gateway.ErrBadToken},
		{"unknown key", unknown, gateway.ErrBadToken},
		{"expired", expired, gateway.ErrTokenExpired},
		{"short", good[:10], gateway.ErrBadToken},
	} {
		c1, err1 := keys.Verify(tc.token, now)
		c2, err2 := v.Verify(tc.token, now)
		if !errors.Is(err1, tc.wantErr) || !errors.Is(err2, tc.wantErr) || c1 != c2 {
			t.Errorf("%s: Keys %+v %v, Verifier %+v %v, want error %v", tc.name, c1, err1, c2, err2, tc.wantErr)
		}
	}
	if c, _ := v.Verify(good, now); c.User != 7654321 || c.Device != 3 || c.KeyID != 2 {
		t.Fatalf("claims %+v", c)
	}
	if n := testing.AllocsPerRun(100, func() { _, _ = v.Verify(good, now) }); n != 0 {
		t.Fatalf("Verifier.Verify allocates %v times, want 0", n)
	}
}
