// Package token is Switchboard's login token: its format, minting,
// parsing, verification, and the keys file that holds the secrets. The
// gateway verifies tokens at LOGIN; `switchboard token` and the load
// generator mint them; an operator's backend mints them in any language from
// this description (docs/PROTOCOL.md 8.1 and the README say the same, and
// protocol/testdata/vectors.json, "tokens", holds examples).
//
// # The token
//
//	token = 0x01 | key_id | user | device | expiry | mac
//	        key_id, user, device, expiry: unsigned LEB128 varints (minimal)
//	        key_id, device < 2^32; user > 0; expiry = Unix seconds, valid while now < expiry
//	        mac = first 16 bytes of HMAC-SHA256(secret of key_id, every byte before mac)
//
//	bound token = 0x02 | key_id | user | device | expiry | mac
//	        the same fields; mac = first 16 bytes of HMAC-SHA256(secret of key_id,
//	        every byte before mac || the device's 32-byte Noise static public key)
//
// 0x01 is the layout's version. A bound token (0x02, MintBound) also binds
// the device's Noise static public key (32 bytes, not carried in the token)
// into its MAC: it verifies only with that key, which a Noise handshake
// proves, so it logs in only over Noise from that device, and a stolen
// token alone logs in nowhere. Over the plain transport a bound token is
// refused; over Noise a server takes only bound tokens unless configured
// otherwise (PROTOCOL.md 8.1). key_id names the secret, so secrets can be
// rotated: the server holds the old and the new key for a while. A varint
// is minimal as everywhere in the protocol: it does not end in a 00 byte
// unless it is the single byte 00, so every token has exactly one encoding.
// A token is 21 to 47 bytes long; `switchboard token` prints it in hex, and
// LOGIN carries the hex-decoded bytes.
//
// Parse checks the layout only, for tools. Keys.Verify and Verifier.Verify
// check the layout, the key, the MAC and the expiry, in that order, and say
// why a token is refused with an error wrapping ErrBad, or ErrExpired;
// Verifier does so without allocating, for the gateway's event loops.
//
// # The keys file
//
// The keys file (FileName, "keys", in the server's data folder) holds one
// key per line, "<key id> <secret in hex>": a decimal id below 2^32 and a
// secret of at least 16 bytes (MinSecretLen). Blank lines and lines
// starting with # are skipped; an id may appear once, and a file holds at
// most MaxKeys (100) keys. Tokens are minted with the newest key, the
// highest id. Load refuses a file that group or others may read
// (ErrKeysExposed); `serve`, `token` and `bench` all read the file with
// it. Create writes a new file with key 1, 32 random bytes, mode 0600,
// durably: written under a temporary name, synced, linked into place and
// the folder synced, so a crash leaves either no file or a whole one.
package token
