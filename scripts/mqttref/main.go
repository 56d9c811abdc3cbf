// Command mqttref drives an MQTT 3.1.1 broker at QoS 1 in the regimes
// `switchboard bench` measures Switchboard in, so that the broker's cost and
// Switchboard's can be compared in the same hour on the same machine: the
// figures of this machine move by up to twice from one day to the next, and a
// reference measured on another day says little (docs/BENCHMARKS.md,
// "Switchboard beside mosquitto in the same hour").
//
// The shape is bench phone's and bench chat's: --pairs pairs of users, each
// user on its own connection, subscribed at QoS 1 to its own topic and
// publishing to its partner's, 100-byte payloads.
//
//   - Open loop (--rate R): each of the 2 × pairs senders publishes every
//     2 × pairs ÷ R on its own evenly spaced schedule, staggered against the
//     others, and never has two messages without their PUBACK: a message due
//     while the previous one waits goes out when the PUBACK comes, and its
//     latencies count from its due time (bench phone). The generator lag
//     row is how late each sender woke for its message after that time:
//     the latencies hold it, as bench's do its own.
//   - Closed loop (--rate 0): each sender keeps --window messages in flight,
//     a message counting until its partner has received it and its PUBACK
//     has come (bench chat --rate 0).
//
// It sends for --warmup and then --duration as one schedule; rates,
// latencies and the broker's CPU are of the measured phase alone. The
// broker's CPU is read from /proc/<--pid>/stat (user and system time) at the
// warm-up's end and the measured phase's end; messages per CPU are the
// messages delivered between the two reads. Every message is checked: a
// receiver expects its partner's messages in order, once each.
//
//	apt-get install mosquitto
//	mosquitto -p 1883 & pid=$!
//	go run ./scripts/mqttref --pid $pid --rate 5000 --warmup 10s --duration 20s
//
// A broker without persistence acknowledges a PUBLISH from memory; mosquitto's
// default configuration is such a broker.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	cfg, jsonOut, err := parseFlags(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "mqttref:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := run(ctx, cfg)
	if res != nil {
		if jsonOut {
			enc := json.NewEncoder(os.Stdout)
			enc.SetIndent("", "  ")
			_ = enc.Encode(res)
		} else {
			res.write(os.Stdout)
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "mqttref:", err)
		os.Exit(1)
	}
}

// parseFlags reads the command line into a Config.
func parseFlags(args []string, out io.Writer) (Config, bool, error) {
	var cfg Config
	fs := flag.NewFlagSet("mqttref", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.StringVar(&cfg.Addr, "addr", "127.0.0.1:1883", "the broker's address")
	fs.IntVar(&cfg.Pid, "pid", 0, "the broker's process id, for its CPU per message; 0: not measured")
	fs.IntVar(&cfg.Pairs, "pairs", 1000, "pairs of users, one connection each")
	fs.Float64Var(&cfg.Rate, "rate", 5000, "messages a second in all, open loop; 0: closed loop with --window in flight per sender")
	fs.IntVar(&cfg.Window, "window", 1, "closed loop: messages in flight per sender, until delivered and acknowledged")
	fs.IntVar(&cfg.Size, "size", 100, "payload bytes (at least 16: the due time and the sender's counter)")
	fs.DurationVar(&cfg.Warmup, "warmup", 0, "time sent before the measured phase, in the same schedule")
	fs.DurationVar(&cfg.Duration, "duration", 20*time.Second, "the measured phase")
	fs.DurationVar(&cfg.Drain, "drain", 10*time.Second, "time allowed after the sending for the last messages to arrive")
	jsonOut := fs.Bool("json", false, "print the result as JSON")
	if err := fs.Parse(args); err != nil {
		return cfg, false, err
	}
	if fs.NArg() > 0 {
		return cfg, false, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	return cfg, *jsonOut, cfg.validate()
}
