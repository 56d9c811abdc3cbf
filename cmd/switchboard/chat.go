package main

import (
	"context"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"time"

	"switchboard/chat"
	"switchboard/client"
	"switchboard/noise"
	"switchboard/token"
)

const chatUsage = `Usage: switchboard chat --user N [flags]

An interactive terminal client (a demo: bodies are plain UTF-8 text, not
end-to-end encrypted). It logs in as --user with a token minted from the
data folder's keys file (or --token), and keeps its state (resume point,
msg_id counter, unconfirmed messages, history) in --state/user-N.json.
Commands on screen: /to USER, /group GROUP, /create USER…, /add USER…,
/remove USER…, /members, /leave, /promote USER…, /demote USER…, /quit,
/help; Enter sends.

Over Noise (--transport noise, or auto with an address off loopback) the
chat keeps the device's static key in --state/user-N.noise (made on first
use, owner-only) and binds the tokens it mints to it. A --token must be
bound to that key: --device-key prints its public half for
'switchboard token -device-key'.

Flags:
`

// chatTokenTTL is how long a token minted by chat lasts: it is minted again
// at each login (after TOKEN_EXPIRED too), so a day is plenty.
const chatTokenTTL = 24 * time.Hour

// chatCmd runs the terminal chat client.
func chatCmd(args []string) error {
	fs := flag.NewFlagSet("chat", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), chatUsage)
		fs.PrintDefaults()
	}
	user := fs.Uint64("user", 0, "user id to log in as (required, > 0)")
	addr := fs.String("addr", "127.0.0.1:7070", "server address, host:port")
	data := fs.String("data", "data", "the server's data folder, whose keys file mints the token (as switchboard token does)")
	tokHex := fs.String("token", "", "login token in hex, as switchboard token prints it; instead of minting one from --data")
	state := fs.String("state", chat.DefaultStateDir, "folder of the chat's state files, one per user (created if missing)")
	transport := fs.String("transport", "auto", "plain, noise, or auto: Noise unless --addr is on loopback, as a default server requires")
	deviceKey := fs.Bool("device-key", false, "print the device's Noise public key (hex) for 'switchboard token -device-key', and exit")
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	switch {
	case fs.NArg() > 0:
		return usageError{fmt.Errorf("unexpected argument %q", fs.Arg(0))}
	case *user == 0:
		return usageError{fmt.Errorf("--user is required")}
	}
	useNoise, err := chatNoise(*transport, *addr)
	if err != nil {
		return err
	}
	var nz *client.NoiseOptions
	if useNoise || *deviceKey {
		if nz, err = chatNoiseOptions(*state, *data, *user); err != nil {
			return err
		}
	}
	if *deviceKey {
		fmt.Println(hex.EncodeToString(nz.Static.Public[:]))
		return nil
	}
	if !useNoise {
		nz = nil
	}
	tok, err := chatToken(*tokHex, *data, *user, nz)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	return chat.Run(ctx, chat.Options{Addr: *addr, User: *user, Token: tok, StateDir: *state, Noise: nz})
}

// chatNoise decides the transport: --transport, or for auto, Noise unless
// addr's host is on loopback (where a default server offers plain).
func chatNoise(transport, addr string) (bool, error) {
	switch transport {
	case "plain":
		return false, nil
	case "noise":
		return true, nil
	case "auto":
	default:
		return false, usageError{fmt.Errorf("--transport %q: want plain, noise or auto", transport)}
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false, usageError{fmt.Errorf("--addr %q: %w", addr, err)}
	}
	if host == "localhost" {
		return false, nil
	}
	ip := net.ParseIP(host)
	return ip == nil || !ip.IsLoopback(), nil
}

// chatNoiseOptions returns the Noise options: the device's static key,
// kept in the state folder (made on first use), and the server's key when
// the data folder holds it (the first handshake is then IK; else XX
// learns it).
func chatNoiseOptions(stateDir, data string, user uint64) (*client.NoiseOptions, error) {
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		return nil, fmt.Errorf("chat: state folder: %w", err)
	}
	keys, err := noise.LoadKeys(filepath.Join(stateDir, "user-"+strconv.FormatUint(user, 10)+".noise"), true)
	if err != nil {
		return nil, fmt.Errorf("chat: the device's Noise key: %w", err)
	}
	nz := &client.NoiseOptions{Static: keys[0]}
	if server, err := noise.LoadKeys(filepath.Join(data, noise.KeysFileName), false); err == nil {
		nz.Server = server[0].Public[:]
	}
	return nz, nil
}

// chatToken returns the token function: the --token given, or one that
// mints a fresh token from the keys file at every login, bound to the
// device's key over Noise.
func chatToken(tokHex, data string, user uint64, nz *client.NoiseOptions) (func(context.Context) ([]byte, error), error) {
	if tokHex != "" {
		tok, err := hex.DecodeString(tokHex)
		if err != nil {
			return nil, usageError{fmt.Errorf("--token: not hex: %w", err)}
		}
		// The state file is --user's: a token of another user would file
		// that user's messages there, and acknowledge them away.
		switch c, err := token.Parse(tok); {
		case err != nil:
			return nil, usageError{fmt.Errorf("--token: %w", err)}
		case c.User != user:
			return nil, usageError{fmt.Errorf("--token logs in as user %d, not --user %d", c.User, user)}
		case c.Bound && nz == nil:
			return nil, usageError{errors.New("--token is bound to a device key, which logs in over Noise only: --transport noise (its key: --device-key)")}
		}
		return func(context.Context) ([]byte, error) { return tok, nil }, nil
	}
	keys, id, err := loadKeys(data, false)
	if err != nil {
		return nil, fmt.Errorf("%w (start the server first with make run, or pass --data or --token)", err)
	}
	return func(context.Context) ([]byte, error) {
		c := token.Claims{KeyID: id, User: user, Device: 1, Expiry: time.Now().Add(chatTokenTTL)}
		if nz != nil {
			return token.MintBound(keys[id], c, nz.Static.Public[:]), nil
		}
		return token.Mint(keys[id], c), nil
	}, nil
}
