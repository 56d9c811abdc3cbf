package token_test

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"testing"
	"time"

	"switchboard/token"
)

// TestTokenVectors checks the token vectors of protocol/testdata/vectors.json
// against this package, which defines tokens: Mint makes exactly their
// bytes from their fields, Parse reads those fields back, and Verify
// accepts them until their expiry and refuses them from then on, or with
// one bit of the MAC flipped.
func TestTokenVectors(t *testing.T) {
	b, err := os.ReadFile("../protocol/testdata/vectors.json")
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
			c := token.Claims{KeyID: v.KeyID, User: v.User, Device: v.Device, Expiry: time.Unix(v.Expiry, 0)}
			if got := token.Mint(secret, c); hex.EncodeToString(got) != v.Hex {
				t.Fatalf("Mint = %x, want %s", got, v.Hex)
			}
			if got, err := token.Parse(want); err != nil || got != c {
				t.Fatalf("Parse = %+v, %v; want %+v", got, err, c)
			}
			keys := token.Keys{v.KeyID: secret}
			got, err := keys.Verify(want, c.Expiry.Add(-time.Second))
			if err != nil || got.User != v.User || got.Device != v.Device || got.KeyID != v.KeyID || !got.Expiry.Equal(c.Expiry) {
				t.Fatalf("Verify a second before expiry = %+v, %v", got, err)
			}
			if _, err := keys.Verify(want, c.Expiry); !errors.Is(err, token.ErrExpired) {
				t.Fatalf("Verify at expiry = %v, want ErrExpired", err)
			}
			bad := append([]byte(nil), want...)
			bad[len(bad)-1] ^= 1
			if _, err := keys.Verify(bad, c.Expiry.Add(-time.Second)); !errors.Is(err, token.ErrBad) {
				t.Fatalf("Verify with a flipped MAC bit = %v, want ErrBad", err)
			}
		})
	}
}
