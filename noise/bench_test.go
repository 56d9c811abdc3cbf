package noise_test

import (
	"crypto/aes"
	"crypto/cipher"
	"testing"

	"golang.org/x/crypto/chacha20poly1305"

	"switchboard/noise"
	"switchboard/protocol"
)

// BenchmarkCipher compares the two AEADs Noise offers on a chat-sized
// frame: sealing with a kept cipher, and setting the cipher up again
// before each seal (what keeping only the key while idle would cost).
//
//	go test -run '^$' -bench Cipher -benchmem ./noise/
func BenchmarkCipher(b *testing.B) {
	key, nonce := make([]byte, 32), make([]byte, 12)
	msg, out := make([]byte, 200), make([]byte, 0, 512)
	chacha := func() cipher.AEAD { a, _ := chacha20poly1305.New(key); return a }
	gcm := func() cipher.AEAD { bc, _ := aes.NewCipher(key); a, _ := cipher.NewGCM(bc); return a }
	for _, c := range []struct {
		name string
		new  func() cipher.AEAD
	}{{"ChaChaPoly", chacha}, {"AESGCM", gcm}} {
		b.Run(c.name+"/seal200", func(b *testing.B) {
			a := c.new()
			for b.Loop() {
				out = a.Seal(out[:0], nonce, msg, nil)
			}
		})
		b.Run(c.name+"/setup+seal200", func(b *testing.B) {
			for b.Loop() {
				out = c.new().Seal(out[:0], nonce, msg, nil)
			}
		})
	}
}

// BenchmarkServerHandshake is the server's CPU for one whole handshake,
// XX and IK, the client's side made beforehand.
//
//	go test -run '^$' -bench ServerHandshake -benchmem ./noise/
func BenchmarkServerHandshake(b *testing.B) {
	server, device := keypair(b), keypair(b)
	scfg := noise.ServerConfig{Keys: []noise.Keypair{server}}
	login := make([]byte, 64)
	for _, tc := range []struct {
		name  string
		known []byte
	}{{"XX", nil}, {"IK", server.Public[:]}} {
		b.Run(tc.name, func(b *testing.B) {
			ccfg := noise.ClientConfig{Static: device, Server: tc.known}
			preface := protocol.AppendPreface(nil, protocol.Version, ccfg.Transport())
			for b.Loop() {
				b.StopTimer()
				c, first, err := noise.NewClient(ccfg, preface, login)
				if err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				s, err := noise.NewServer(scfg, preface)
				if err != nil {
					b.Fatal(err)
				}
				kind, msg, _, _ := noise.ReadHandshake(first)
				reply, err := s.Step(kind, msg)
				if err != nil {
					b.Fatal(err)
				}
				if s.Want() == 0 {
					continue // IK: done in one step
				}
				b.StopTimer()
				kind, msg, _, _ = noise.ReadHandshake(reply)
				third, err := c.Step(kind, msg)
				if err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				kind, msg, _, _ = noise.ReadHandshake(third)
				if _, err := s.Step(kind, msg); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
