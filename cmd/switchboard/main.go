// Command switchboard is Switchboard's one binary: the server, the token
// minter, and the tools around them.
//
//	switchboard serve      run the server
//	switchboard token      mint a login token from the server's secret
//	switchboard noise-key  print the server's Noise public key, or rotate or retire keys
//	switchboard bench      load-generate against a server and report
//	switchboard preflight  how many connections this host can hold, and what binds
//	switchboard chat       an interactive terminal chat client (a demo)
//	switchboard top        watch a server's or a cluster's queues, live
//	switchboard backup     write a backup of a running server's mailboxes
//	switchboard restore    load a backup into an empty data folder
//	switchboard move       move mailboxes to their new homes when a cluster's node list changes
//
// Each subcommand's -h lists its flags and exits 0; a flag it does not know
// exits 2. serve's settings also come from a TOML file and SWITCHBOARD_
// variables (docs/CONFIG.md).
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
)

type command struct {
	name, summary string
	run           func(args []string) error
}

func commands() []command {
	return []command{
		{"serve", "run the server", serve},
		{"token", "mint a login token from the server's secret", tokenCmd},
		{"noise-key", "print the server's Noise static public keys; rotate or retire them", noiseKeyCmd},
		{"bench", "load-generate against a server and report", benchCmd},
		{"preflight", "how many connections this host can hold, and what binds", preflightCmd},
		{"chat", "an interactive terminal chat client (a demo)", chatCmd},
		{"top", "watch a server's or a cluster's queues and rates, live", topCmd},
		{"backup", "write a backup of a running server's mailboxes to a file", backupCmd},
		{"restore", "load a backup into an empty data folder (server stopped)", restoreCmd},
		{"move", "move mailboxes to their new homes after a node list change (cluster stopped)", moveCmd},
	}
}

func main() {
	if len(os.Args) < 2 {
		usage(os.Stderr)
		os.Exit(2)
	}
	if os.Args[1] == "-h" || os.Args[1] == "--help" || os.Args[1] == "help" {
		usage(os.Stdout) // asked for: on standard output, as each command's -h
		return
	}
	for _, c := range commands() {
		if c.name == os.Args[1] {
			os.Exit(exitCode(c.name, c.run(os.Args[2:])))
		}
	}
	fmt.Fprintf(os.Stderr, "switchboard: unknown command %q\n\n", os.Args[1])
	usage(os.Stderr)
	os.Exit(2)
}

// exitCode reports err of subcommand name and returns the process's exit
// status: 0 for success and for help asked for, 2 for a command line or
// configuration it cannot run with, 1 for a failure while running.
func exitCode(name string, err error) int {
	var ue usageError
	switch {
	case err == nil, errors.Is(err, errHelp), errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &ue):
		fmt.Fprintf(os.Stderr, "switchboard %s: %s\nRun 'switchboard %s -h' for its flags.\n", name, said(name, err), name)
		return 2
	}
	fmt.Fprintf(os.Stderr, "switchboard %s: %s\n", name, said(name, err))
	return 1
}

// said is err's text without a leading "name: " of the package of the same
// name, which the line's own "switchboard name:" already says.
func said(name string, err error) string {
	return strings.TrimPrefix(err.Error(), name+": ")
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "Usage: switchboard <command> [flags]\n\nCommands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-10s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nRun 'switchboard <command> -h' for a command's flags.")
}
