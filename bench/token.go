package bench

import (
	"bufio"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// The generator mints its own login tokens: bench may import only protocol,
// so the token format of gateway/auth.go is repeated here (a test checks the
// two agree):
//
//	0x01 | key_id varint | user varint | device varint | expiry varint | mac[16]
//
// mac is the first 16 bytes of HMAC-SHA256 over everything before it.
const (
	tokenVersion = 1
	tokenMACLen  = 16
)

// Key is one token secret of the server's keys file.
type Key struct {
	ID     uint32
	Secret []byte
}

// ReadKeys reads a keys file ("<key id> <hex secret>" per line, # comments)
// and returns its newest (highest id) key, the one `switchboard token` signs with.
func ReadKeys(path string) (Key, error) {
	f, err := os.Open(path)
	if err != nil {
		return Key{}, fmt.Errorf("bench: reading token keys (the server's data folder holds them; see --keys): %w", err)
	}
	defer f.Close()
	var k Key
	found := false
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		idText, secretHex, ok := strings.Cut(text, " ")
		id, err1 := strconv.ParseUint(idText, 10, 32)
		secret, err2 := hex.DecodeString(strings.TrimSpace(secretHex))
		if !ok || err1 != nil || err2 != nil || len(secret) < 16 {
			return Key{}, fmt.Errorf("bench: %s:%d: want \"<key id> <hex secret>\"", path, line)
		}
		if !found || uint32(id) > k.ID {
			k, found = Key{ID: uint32(id), Secret: secret}, true
		}
	}
	if err := sc.Err(); err != nil {
		return Key{}, fmt.Errorf("bench: reading %s: %w", path, err)
	}
	if !found {
		return Key{}, fmt.Errorf("bench: %s holds no key", path)
	}
	return k, nil
}

// mintToken returns a login token for user, device 1, valid until expiry.
// It appends to dst.
func mintToken(dst []byte, k Key, user uint64, expiry time.Time) []byte {
	start := len(dst)
	dst = append(dst, tokenVersion)
	dst = binary.AppendUvarint(dst, uint64(k.ID))
	dst = binary.AppendUvarint(dst, user)
	dst = binary.AppendUvarint(dst, 1)
	dst = binary.AppendUvarint(dst, uint64(expiry.Unix()))
	h := hmac.New(sha256.New, k.Secret)
	h.Write(dst[start:])
	return append(dst, h.Sum(nil)[:tokenMACLen]...)
}
