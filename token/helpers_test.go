package token_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"slices"
)

// signed returns body followed by its MAC under secret, spelled out here
// rather than by the package, so a test can sign any body.
func signed(secret, body []byte) []byte {
	h := hmac.New(sha256.New, secret)
	h.Write(body)
	return append(slices.Clone(body), h.Sum(nil)[:16]...)
}

func binaryUvarint(x uint64) []byte { return binary.AppendUvarint(nil, x) }

// padded returns varint v with one more, zero, group: the same value, not
// minimal.
func padded(v []byte) []byte {
	p := slices.Clone(v)
	p[len(p)-1] |= 0x80
	return append(p, 0)
}

func cat(parts ...[]byte) []byte { return slices.Concat(parts...) }
