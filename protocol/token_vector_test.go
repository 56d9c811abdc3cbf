package protocol_test

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"testing"
	"time"

	"switchboard/gateway"
)

// TestTokenVectors checks the token vectors of testdata/vectors.json
// against the gateway, which defines tokens: MintToken makes exactly their
// bytes from their fields, and Verify accepts them until their expiry and
// refuses them from then on, or with one bit of the MAC flipped.
func TestTokenVectors(t *testing.T) {
	b, err := os.ReadFile("testdata/vectors.json")
	if err != nil {
		t.Fatal(err)
	}
	var file struct {
		Tokens []struct {
			Name, Secret, Hex string
			KeyID             uint32 `json:"key_id"`
			User              uint64
			Device            uint32
			Expiry            int64
		}
	}
	if err := json.Unmarshal(b, &file); err != nil {
		t.Fatal(err)
	}
	if len(file.Tokens) == 0 {
		t.Fatal("no token vectors")
	}
	for _, v := range file.Tokens {
		t.Run(v.Name, func(t *testing.T) {
			secret, err1 := hex.DecodeString(v.Secret)
			want, err2 := hex.DecodeString(v.Hex)
			if err1 != nil || err2 != nil {
				t.Fatal(err1, err2)
			}
			c := gateway.Claims{KeyID: v.KeyID, User: v.User, Device: v.Device, Expiry: time.Unix(v.Expiry, 0)}
			if got := gateway.MintToken(secret, c); hex.EncodeToString(got) != v.Hex {
				t.Fatalf("MintToken = %x, want %s", got, v.Hex)
			}
			keys := gateway.Keys{v.KeyID: secret}
			got, err := keys.Verify(want, c.Expiry.Add(-time.Second))
			if err != nil || got.User != v.User || got.Device != v.Device || got.KeyID != v.KeyID || !got.Expiry.Equal(c.Expiry) {
				t.Fatalf("Verify a second before expiry = %+v, %v", got, err)
			}
			if _, err := keys.Verify(want, c.Expiry); !errors.Is(err, gateway.ErrTokenExpired) {
				t.Fatalf("Verify at expiry = %v, want ErrTokenExpired", err)
			}
			bad := append([]byte(nil), want...)
			bad[len(bad)-1] ^= 1
			if _, err := keys.Verify(bad, c.Expiry.Add(-time.Second)); !errors.Is(err, gateway.ErrBadToken) {
				t.Fatalf("Verify with a flipped MAC bit = %v, want ErrBadToken", err)
			}
		})
	}
}
