package main

import (
	"encoding/hex"
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
func noiseKeyCmd(args []string) error { return noiseKey(args, os.Stdout) }

func noiseKey(args []string, w io.Writer) error {
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
	if fs.NArg() > 0 || (*rotate && *retire) {
		return usageError{fmt.Errorf("noise-key takes --data and at most one of --rotate and --retire")}
	}
	path := filepath.Join(*data, noise.KeysFileName)
	switch {
	case *rotate:
		if _, err := noise.RotateKeys(path); err != nil {
			return err
		}
	case *retire:
		if err := noise.RetireKeys(path); err != nil {
			return err
		}
	}
	keys, err := noise.LoadKeys(path, false)
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
	return nil
}
