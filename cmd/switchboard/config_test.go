package main

import (
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// runMain runs `switchboard args...` in a child process with env added,
// and returns its exit status, stdout and stderr.
func runMain(t *testing.T, env []string, args ...string) (int, string, string) {
	t.Helper()
	js, _ := json.Marshal(args)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctxTimeout(t, 30*time.Second), self)
	cmd.Env = append(append(os.Environ(), childEnv+"="+string(js)), env...)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, stdout.String(), stderr.String()
	case errors.As(err, &ee):
		return ee.ExitCode(), stdout.String(), stderr.String()
	}
	t.Fatalf("switchboard %v: %v\n%s", args, err, stderr.String())
	return 0, "", ""
}

// TestHelpExitsZero: -h and --help print help and exit 0 for every
// subcommand; serve's lists every setting.
func TestHelpExitsZero(t *testing.T) {
	for _, c := range commands() {
		for _, h := range []string{"-h", "--help"} {
			code, stdout, stderr := runMain(t, nil, c.name, h)
			if code != 0 {
				t.Errorf("switchboard %s %s: exit %d, want 0\n%s", c.name, h, code, stderr)
			}
			if !strings.Contains(stdout+stderr, "-") {
				t.Errorf("switchboard %s %s printed no help", c.name, h)
			}
			if c.name == "serve" {
				for _, f := range []string{"--outbound-cap bytes", "--window-bytes bytes", "--memtable-size bytes", "--slow-after duration", "SWITCHBOARD_MAX_BODY", "--print-config", "--pprof"} {
					if !strings.Contains(stdout, f) {
						t.Errorf("serve --help lacks %q", f)
					}
				}
			}
		}
	}
}

// TestUnknownFlagExitsTwo: a flag a subcommand does not know exits 2 and
// names the flag.
func TestUnknownFlagExitsTwo(t *testing.T) {
	for _, c := range commands() {
		code, _, stderr := runMain(t, nil, c.name, "--no-such-flag")
		if code != 2 || !strings.Contains(stderr, "no-such-flag") {
			t.Errorf("switchboard %s --no-such-flag: exit %d, want 2 naming the flag\n%s", c.name, code, stderr)
		}
	}
}

// TestPrintConfigRoundTrip: `serve --print-config` prints the settings in
// force (flag over environment over file) and exits 0; loaded with
// --config, the printed file prints the same again.
func TestPrintConfigRoundTrip(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "in.toml")
	os.WriteFile(file, []byte("[gateway]\nrate = 10\nmax-body = \"16KiB\"\n[delivery]\nwindow = 64\n"), 0o600)
	code, first, stderr := runMain(t, []string{"SWITCHBOARD_RATE=20", "SWITCHBOARD_WINDOW=32"},
		"serve", "--config", file, "--window", "16", "-data", filepath.Join(dir, "data"), "--print-config")
	if code != 0 {
		t.Fatalf("--print-config: exit %d\n%s", code, stderr)
	}
	for _, want := range []string{"rate = 20 ", "window = 16 ", `max-body = "16KiB"`, `outbound-cap = "256KiB"`, `data = "` + filepath.Join(dir, "data") + `"`} {
		if !strings.Contains(first, want) {
			t.Errorf("printed config lacks %q:\n%s", want, first)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "data")); err == nil {
		t.Error("--print-config created the data folder")
	}
	printed := filepath.Join(dir, "printed.toml")
	os.WriteFile(printed, []byte(first), 0o600)
	code, second, stderr := runMain(t, nil, "serve", "--config", printed, "--print-config")
	if code != 0 || second != first {
		t.Fatalf("reprinted (exit %d) differs:\n%s\nfirst:\n%s\n%s", code, second, first, stderr)
	}
}

// TestInvalidConfigExitsTwo: cross-package problems stop serve before it
// opens anything, all named at once.
func TestInvalidConfigExitsTwo(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	code, _, stderr := runMain(t, nil, "serve", "--data", data, "--max-body", "200KiB", "--max-frame", "201KiB", "--max-value-bytes", "100KiB")
	if code != 2 {
		t.Fatalf("exit %d, want 2\n%s", code, stderr)
	}
	for _, want := range []string{"--outbound-cap", "--max-value-bytes"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr does not name %s:\n%s", want, stderr)
		}
	}
	if _, err := os.Stat(data); err == nil {
		t.Error("an invalid configuration created the data folder")
	}
}

// TestBenchUsageExitsTwo: a bench command line that cannot run (no
// scenario, an unknown one, a value out of range, a rate that is no
// number) exits 2 naming the problem, as every other command line does.
func TestBenchUsageExitsTwo(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string
	}{
		{nil, "name a scenario"},
		{[]string{"nosuch"}, `unknown scenario "nosuch"`},
		{[]string{"group", "--group-size", "1"}, "--group-size 1"},
		{[]string{"sweep", "--rates", "fast"}, `--rates: "fast"`},
		{[]string{"sweep", "--rate", "500"}, "sweep offers each of --rates"},
		{[]string{"sweep", "--p99", "0s"}, "--p99 0s: the latency target must be positive"},
	} {
		code, _, stderr := runMain(t, nil, append([]string{"bench"}, tt.args...)...)
		if code != 2 || !strings.Contains(stderr, tt.want) {
			t.Errorf("switchboard bench %v: exit %d, want 2 with %q\n%s", tt.args, code, tt.want, stderr)
		}
	}
}
