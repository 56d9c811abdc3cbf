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
		fmt.Fprintln(fs.Output(), "Usage: switchboard preflight [--data data] [--json] [--sync-probe 200]\n\n"+
			"Reads the open-file limits, the kernel's connection settings, memory, disk and cores,\n"+
			"and prints how many connections one server process can hold here, which limit binds\n"+
			"first, and the commands that raise each; then times durable writes on the data\n"+
			"folder's disk. Exits 0 however low the limits are.\n\nFlags:")
		fs.PrintDefaults()
	}
	data := fs.String("data", "data", "the server's data folder (path): its disk's free space, its store's open files")
	asJSON := fs.Bool("json", false, "print the report as JSON (field names in preflight/doc.go) instead of the table")
	syncs := fs.Int("sync-probe", 200, "durable writes to time on the data folder's disk, as the server's log makes them (count; 0: none): each ACCEPT waits for one")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return usageError{err}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Errorf("unexpected argument %q", fs.Arg(0))}
	}
	if *syncs < 0 || *syncs > 100_000 {
		return usageError{fmt.Errorf("--sync-probe %d: want 0 to 100000 writes", *syncs)}
	}
	probe.Data, probe.Syncs = *data, *syncs
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
