package main

import (
	"encoding/hex"
	"flag"
	"fmt"
	"time"

	"switchboard/node"
	"switchboard/token"
)

// tokenCmd mints a login token from the newest key of the keys file and
// prints it in hex.
func tokenCmd(args []string) error {
	fs := flag.NewFlagSet("token", flag.ContinueOnError)
	data := fs.String("data", "data", "the server's data folder (holds the keys file)")
	user := fs.Uint64("user", 0, "user id the token logs in as (required, > 0)")
	device := fs.Uint("device", 1, "device id")
	ttl := new(30 * 24 * time.Hour)
	fs.Func("ttl", "how long the token is valid, e.g. 12h or 30d (default 30d)", func(v string) (err error) {
		*ttl, err = node.ParseDuration(v)
		return err
	})
	deviceKey := fs.String("device-key", "", "the device's Noise static public key, 64 hex digits: the token is then bound to it and logs in only over Noise from that device (PROTOCOL.md 8.1)")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `Usage: switchboard token -user N [-data DIR] [-device N] [-ttl 30d] [-device-key HEX]

Prints a login token for user N, signed with the newest key of DIR's keys file
(serve makes it on its first start). Over Noise a token must be bound to the
device's static key (-device-key).

`)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	switch {
	case fs.NArg() > 0:
		return usageError{fmt.Errorf("unexpected argument %q", fs.Arg(0))}
	case *user == 0:
		return usageError{fmt.Errorf("-user is required")}
	case *device > 1<<32-1:
		return usageError{fmt.Errorf("-device %d: a device id is below 2^32", *device)}
	case *ttl <= 0:
		return usageError{fmt.Errorf("-ttl %v: a token must be valid for some time", *ttl)}
	}
	var key []byte
	if *deviceKey != "" {
		k, err := hex.DecodeString(*deviceKey)
		if err != nil || len(k) != token.KeyLen {
			return usageError{fmt.Errorf("-device-key: want %d hex digits, a Curve25519 public key", 2*token.KeyLen)}
		}
		key = k
	}
	keys, id, err := loadKeys(*data, false)
	if err != nil {
		return err
	}
	c := token.Claims{KeyID: id, User: *user, Device: uint32(*device), Expiry: time.Now().Add(*ttl)}
	tok := token.Mint(keys[id], c)
	if key != nil {
		tok = token.MintBound(keys[id], c, key)
	}
	fmt.Println(hex.EncodeToString(tok))
	return nil
}
