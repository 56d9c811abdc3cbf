package main

import (
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"switchboard/noise"
)

// noiseKeyCmd prints the server's Noise static public keys, the current one
// first, for client configuration; --rotate adds a new current key, and
// --retire drops all but the current one (docs/OPERATIONS.md, "Transport
// keys").
func noiseKeyCmd(args []string) error { return noiseKey(args, os.Stdout, os.Stderr) }

// noiseKey is noiseKeyCmd printing the keys to w and what a change means
// for the running server to note.
func noiseKey(args []string, w, note io.Writer) error {
	fs := flag.NewFlagSet("noise-key", flag.ContinueOnError)
	data := fs.String("data", "data", "the server's data folder (holds noise-keys)")
	rotate := fs.Bool("rotate", false, "add a new key, current from the next start; older ones stay accepted for IK")
	retire := fs.Bool("retire", false, "keep only the current key")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `Usage: switchboard noise-key [-data DIR] [-rotate | -retire]

Prints the public key of the server's current Noise static key, which clients
pin (docs/OPERATIONS.md, "Transport keys").

`)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	switch {
	case fs.NArg() > 0:
		return usageError{fmt.Errorf("unexpected argument %q", fs.Arg(0))}
	case *rotate && *retire:
		return usageError{errors.New("--rotate and --retire: give one (rotate, reload, and retire once clients have the new key)")}
	}
	path := filepath.Join(*data, noise.KeysFileName)
	var err error
	switch {
	case *rotate:
		_, err = noise.RotateKeys(path)
	case *retire:
		err = noise.RetireKeys(path)
	}
	var keys []noise.Keypair
	if err == nil {
		keys, err = noise.LoadKeys(path, false)
	}
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("%s has no Noise keys (%s): serve makes them when it first starts offering Noise; is --data the server's data folder?", *data, noise.KeysFileName)
	}
	if err != nil {
		return err
	}
	for i, k := range keys {
		what := "current"
		if i > 0 {
			what = "older, accepted for IK"
		}
		fmt.Fprintf(w, "%s %s\n", hex.EncodeToString(k.Public[:]), what)
	}
	switch {
	case *rotate:
		fmt.Fprintln(note, "noise-key: a running server proves the old key until its next reload or start: give clients the new key only after that")
	case *retire:
		fmt.Fprintln(note, "noise-key: the running server accepts the retired keys until its next reload or start")
	}
	return nil
}
