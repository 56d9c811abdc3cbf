package gateway_test

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"switchboard/gateway"
)

// TestTokens: a minted token verifies under its key (also while a newer key
// is in use: rotation), and every kind of damage is refused.
func TestTokens(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	old, cur := bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32)
	keys := gateway.Keys{1: old, 2: cur}
	claims := gateway.Claims{KeyID: 2, User: 42, Device: 7, Expiry: now.Add(time.Hour)}
	good := gateway.MintToken(cur, claims)
	flip := func(i int) []byte { b := bytes.Clone(good); b[i] ^= 1; return b }
	tests := []struct {
		name  string
		token []byte
		want  error
	}{
		{name: "valid", token: good},
		{name: "valid under the old key", token: gateway.MintToken(old, gateway.Claims{KeyID: 1, User: 42, Device: 7, Expiry: now.Add(time.Hour)})},
		{name: "expired", token: gateway.MintToken(cur, gateway.Claims{KeyID: 2, User: 42, Expiry: now}), want: gateway.ErrTokenExpired},
		{name: "wrong secret", token: gateway.MintToken(old, claims), want: gateway.ErrBadToken},
		{name: "unknown key id", token: gateway.MintToken(cur, gateway.Claims{KeyID: 3, User: 42, Expiry: now.Add(time.Hour)}), want: gateway.ErrBadToken},
		{name: "user 0", token: gateway.MintToken(cur, gateway.Claims{KeyID: 2, User: 0, Expiry: now.Add(time.Hour)}), want: gateway.ErrBadToken},
		{name: "user changed", token: flip(2), want: gateway.ErrBadToken},
		{name: "mac changed", token: flip(len(good) - 1), want: gateway.ErrBadToken},
		{name: "version changed", token: flip(0), want: gateway.ErrBadToken},
		{name: "truncated", token: good[:len(good)-1], want: gateway.ErrBadToken},
		{name: "trailing byte", token: append(bytes.Clone(good), 0), want: gateway.ErrBadToken},
		{name: "empty", token: nil, want: gateway.ErrBadToken},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := keys.Verify(tt.token, now)
			if !errors.Is(err, tt.want) || (tt.want == nil && err != nil) {
				t.Fatalf("Verify = %v, want %v", err, tt.want)
			}
			if tt.want == nil && (c.User != 42 || c.Device != 7 || !c.Expiry.Equal(now.Add(time.Hour))) {
				t.Fatalf("claims %+v", c)
			}
		})
	}
}
