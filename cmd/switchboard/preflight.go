package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"switchboard/preflight"
)

// preflightCmd reports how many connections this host can hold, which
// limit binds first and how to raise each (package preflight). It exits 0
// however low the limits are: it is a report.
func preflightCmd(args []string) error { return runPreflight(args, os.Stdout, preflight.Probe{}) }

// runPreflight is preflightCmd writing to w with probe, whose Data the
// --data flag sets: tests give a fake tree.
func runPreflight(args []string, w io.Writer, probe preflight.Probe) error {
	fs := flag.NewFlagSet("preflight", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "Usage: switchboard preflight [--data data] [--json]\n\n"+
			"Reads the open-file limits, the kernel's connection settings, memory, disk and cores,\n"+
			"and prints how many connections one server process can hold here, which limit binds\n"+
			"first, and the commands that raise each. Exits 0 however low the limits are.\n\nFlags:")
		fs.PrintDefaults()
	}
	data := fs.String("data", "data", "the server's data folder (path): its disk's free space, its store's open files")
	asJSON := fs.Bool("json", false, "print the report as JSON (field names in preflight/doc.go) instead of the table")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return usageError{err}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Errorf("unexpected argument %q", fs.Arg(0))}
	}
	probe.Data = *data
	facts, err := probe.Read()
	if err != nil {
		return err
	}
	r := preflight.NewReport(facts)
	if *asJSON {
		return preflight.WriteJSON(w, r)
	}
	return preflight.WriteText(w, r)
}
