package main

import (
	"context"
	"encoding/hex"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"time"

	"switchboard/chat"
	"switchboard/token"
)

const chatUsage = `Usage: switchboard chat --user N [flags]

An interactive terminal client (a demo: bodies are plain UTF-8 text, not
end-to-end encrypted). It logs in as --user with a token minted from the
data folder's keys file (or --token), and keeps its state (resume point,
msg_id counter, unconfirmed messages, history) in --state/user-N.json.
Commands on screen: /to USER, /group GROUP, /create USER…, /add USER…,
/remove USER…, /members, /leave, /quit; Enter sends.

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
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	switch {
	case fs.NArg() > 0:
		return usageError{fmt.Errorf("unexpected argument %q", fs.Arg(0))}
	case *user == 0:
		return usageError{fmt.Errorf("--user is required")}
	}
	tok, err := chatToken(*tokHex, *data, *user)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	return chat.Run(ctx, chat.Options{Addr: *addr, User: *user, Token: tok, StateDir: *state})
}

// chatToken returns the token function: the --token given, or one that
// mints a fresh token from the keys file at every login.
func chatToken(tokHex, data string, user uint64) (func(context.Context) ([]byte, error), error) {
	if tokHex != "" {
		tok, err := hex.DecodeString(tokHex)
		if err != nil {
			return nil, usageError{fmt.Errorf("--token: not hex: %w", err)}
		}
		return func(context.Context) ([]byte, error) { return tok, nil }, nil
	}
	keys, id, err := loadKeys(data, false)
	if err != nil {
		return nil, fmt.Errorf("%w (start the server first with make run, or pass --data or --token)", err)
	}
	return func(context.Context) ([]byte, error) {
		return token.Mint(keys[id], token.Claims{KeyID: id, User: user, Device: 1, Expiry: time.Now().Add(chatTokenTTL)}), nil
	}, nil
}
