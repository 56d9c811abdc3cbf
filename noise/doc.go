// Package noise is Switchboard's encrypted transport: the Noise Pipes
// handshakes (Noise_XX for first contact, Noise_IK when the client knows
// the server's static key, Noise_XXfallback when IK fails because that key
// changed), and the transport messages that carry frames afterwards. It is
// what a connection whose preface names TransportNoiseXX or
// TransportNoiseIK speaks; docs/PROTOCOL.md, "Noise transport", is the
// specification, and vectors_test.go holds its golden vectors.
//
// The cipher suite is 25519_ChaChaPoly_SHA256. ChaChaPoly because a
// session keeps its two transport ciphers for as long as it lives, idle
// almost always: ChaCha20-Poly1305 keeps 32 bytes per key, where Go's
// AES-GCM keeps 1,280 bytes (expanded keys and GHASH tables) and takes
// about 9 µs to set up again, so keeping only keys while idle would cost
// that on every wake-up. AES-GCM seals a 200-byte frame faster (0.19 µs
// against 0.32 µs here, BenchmarkCipher), a tenth of a microsecond against
// the roughly 100 µs of server CPU a message costs. SHA256 because every
// platform has it in hardware or in its standard library.
//
// # Wire
//
// After the 4-byte preface, the client and the server exchange handshake
// messages, each framed as
//
//	+------+----------------+-------------------------+
//	| kind | length (2, BE) | Noise handshake message |
//	+------+----------------+-------------------------+
//
// and then transport messages, each framed as
//
//	+----------------+---------------------------------------+
//	| length (2, BE) | ciphertext of whole frames, 16-byte tag |
//	+----------------+---------------------------------------+
//
// The prologue of every handshake is the 4-byte preface, so the version and
// transport the client asked for are authenticated. The client's LOGIN
// frame is the payload of its last handshake message (IK's first); every
// other handshake payload is empty. A transport message always holds whole
// frames, so a decrypted message never leaves a partial frame behind and an
// idle session holds no plaintext buffer.
//
// # Use
//
// A ServerHandshake or ClientHandshake runs one handshake; each step takes
// one message from the peer and returns the next to send. The
// Diffie-Hellman operations cost about half a millisecond of CPU, so a
// server runs the steps off its event loops. Done hands over a Session:
// the two transport ciphers and their counters, which Seal and Open use in
// socket order.
package noise
