package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/pflag"

	"switchboard/top"
)

const topUsage = `Usage: switchboard top [--addr host:port,...] [--every 1s] [--once]

Shows the queues and rates of a server, or of a cluster summed, read from
each server's metrics (the admin listener, serve's --metrics), refreshed
live: connections by state, logins/s, messages in and out per second, p99
of send to ACCEPT, the longest shard, group and commit queues against their
capacity, held receipts, slow-consumer closes, store size and free disk,
syncs per message, store errors. What is over its limit is drawn in red and
followed by !: a queue at 80% of its capacity or more, slow-consumer closes
rising, free disk under 10%, more than one sync per message, any store
error, a server not answering or not ready (docs/METRICS.md, "switchboard
top"). A server that does not answer is shown as down. q quits.

--once prints one plain-text frame, after two scrapes --every apart (rates
need two), and exits 0 whatever it shows.

Flags:
`

// topCmd runs switchboard top on the terminal.
func topCmd(args []string) error { return runTop(args, os.Stdout) }

// runTop parses top's flags and runs it; --once writes its frame to out.
func runTop(args []string, out io.Writer) error {
	fs := pflag.NewFlagSet("top", pflag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are reported once, by main
	addrs := fs.StringSlice("addr", []string{"127.0.0.1:9070"}, "servers' admin listeners (serve's --metrics), comma-separated or repeated; at most 16")
	every := fs.Duration("every", top.DefaultEvery, "time between scrapes, at least 100ms; also each scrape's timeout, held between 1s and 5s")
	once := fs.Bool("once", false, "print one plain-text frame and exit")
	fs.BoolP("help", "h", false, "this help")
	fs.Usage = func() {
		fmt.Fprint(out, topUsage)
		fs.SetOutput(out)
		fs.PrintDefaults()
		fs.SetOutput(io.Discard)
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			fs.Usage()
			return errHelp
		}
		return usageError{err}
	}
	if h, _ := fs.GetBool("help"); h {
		fs.Usage()
		return errHelp
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Errorf("unexpected argument %q", fs.Arg(0))}
	}
	if *every <= 0 && fs.Changed("every") {
		return usageError{fmt.Errorf("--every %v: at least 100ms", *every)}
	}
	cfg := top.Config{Addrs: *addrs, Every: *every}
	if err := cfg.Validate(); err != nil {
		return usageError{err}
	}
	if *once {
		return topOnce(cfg, out)
	}
	return top.Run(cfg)
}

// topOnce scrapes every server twice, cfg.Every apart, and writes the
// frame as plain text.
func topOnce(cfg top.Config, out io.Writer) error {
	s := cfg.Scraper()
	ctx := context.Background()
	prev := s.ScrapeAll(ctx, cfg.Addrs)
	wait := time.NewTimer(time.Until(prev[0].At.Add(cfg.Every)))
	<-wait.C
	cur := s.ScrapeAll(ctx, cfg.Addrs)
	_, err := io.WriteString(out, top.NewFrame(prev, cur, cfg.Every).Render(top.Styles{}))
	return err
}
