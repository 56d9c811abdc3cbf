package main

import (
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"switchboard/noise"
)

// TestNoiseKeyCommand: `switchboard noise-key` prints the current public
// key; --rotate adds a key, prints it first as current and the old one
// after it, and says on stderr that clients get it only after a reload;
// --retire keeps only the current one. Each exits 0.
func TestNoiseKeyCommand(t *testing.T) {
	data := t.TempDir()
	path := filepath.Join(data, noise.KeysFileName)
	keys, err := noise.LoadKeys(path, true)
	if err != nil {
		t.Fatal(err)
	}
	first := hex.EncodeToString(keys[0].Public[:])
	run := func(args ...string) (string, string) {
		t.Helper()
		code, stdout, stderr := runMain(t, nil, append([]string{"noise-key", "--data", data}, args...)...)
		if code != 0 {
			t.Fatalf("noise-key %q: exit %d\n%s", args, code, stderr)
		}
		return stdout, stderr
	}
	if out, _ := run(); out != first+" current\n" {
		t.Errorf("noise-key printed %q, want %q", out, first+" current\n")
	}

	out, note := run("--rotate")
	keys, err = noise.LoadKeys(path, false)
	if err != nil || len(keys) != 2 {
		t.Fatalf("after --rotate the file holds %d keys (%v), want 2", len(keys), err)
	}
	second := hex.EncodeToString(keys[0].Public[:])
	if want := second + " current\n" + first + " older, accepted for IK\n"; second == first || out != want {
		t.Errorf("noise-key --rotate printed %q, want %q", out, want)
	}
	if !strings.Contains(note, "give clients the new key only after that") {
		t.Errorf("noise-key --rotate said %q on stderr, want when to hand the key out", note)
	}

	out, note = run("--retire")
	if out != second+" current\n" {
		t.Errorf("noise-key --retire printed %q, want %q", out, second+" current\n")
	}
	if !strings.Contains(note, "until its next reload or start") {
		t.Errorf("noise-key --retire said %q on stderr", note)
	}
	if keys, err = noise.LoadKeys(path, false); err != nil || len(keys) != 1 || hex.EncodeToString(keys[0].Public[:]) != second {
		t.Errorf("after --retire the file holds %d keys (%v), want the current one alone", len(keys), err)
	}
}

// TestNoiseKeyRefusals: what an operator sees when noise-key cannot do
// what was asked: a command line it cannot run with exits 2 and points to
// -h; a keys file that is missing, readable by others, or full exits 1 and
// says what to do; none of them changes the file or prints a key.
func TestNoiseKeyRefusals(t *testing.T) {
	data := t.TempDir()
	path := filepath.Join(data, noise.KeysFileName)
	if _, err := noise.LoadKeys(path, true); err != nil {
		t.Fatal(err)
	}
	full := t.TempDir()
	for range noise.MaxKeys - 1 {
		if _, err := noise.LoadKeys(filepath.Join(full, noise.KeysFileName), true); err != nil {
			t.Fatal(err)
		}
		if _, err := noise.RotateKeys(filepath.Join(full, noise.KeysFileName)); err != nil {
			t.Fatal(err)
		}
	}
	exposed := t.TempDir()
	exposedPath := filepath.Join(exposed, noise.KeysFileName)
	if _, err := noise.LoadKeys(exposedPath, true); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(exposedPath, 0o644); err != nil {
		t.Fatal(err)
	}
	empty := t.TempDir()
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string // the whole of stderr
	}{
		{"rotate and retire", []string{"--data", data, "--rotate", "--retire"}, 2,
			"switchboard noise-key: --rotate and --retire: give one (rotate, reload, and retire once clients have the new key)\nRun 'switchboard noise-key -h' for its flags.\n"},
		{"an argument", []string{"--data", data, "rotate"}, 2,
			"switchboard noise-key: unexpected argument \"rotate\"\nRun 'switchboard noise-key -h' for its flags.\n"},
		{"an unknown flag", []string{"--data", data, "--rotat"}, 2, ""},
		{"no keys file", []string{"--data", empty}, 1,
			fmt.Sprintf("switchboard noise-key: %s has no Noise keys (noise-keys): serve makes them when it first starts offering Noise; is --data the server's data folder?\n", empty)},
		{"no keys file to rotate", []string{"--data", empty, "--rotate"}, 1,
			fmt.Sprintf("switchboard noise-key: %s has no Noise keys (noise-keys): serve makes them when it first starts offering Noise; is --data the server's data folder?\n", empty)},
		{"readable by others", []string{"--data", exposed, "--rotate"}, 1,
			fmt.Sprintf("switchboard noise-key: noise: keys file readable by group or others: %s has mode -rw-r--r--: chmod 600 it\n", exposedPath)},
		{"full", []string{"--data", full, "--rotate"}, 1,
			fmt.Sprintf("switchboard noise-key: noise: %s holds %d keys, the most it may: retire the older ones first\n", filepath.Join(full, noise.KeysFileName), noise.MaxKeys)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := map[string]string{}
			for _, d := range []string{data, full, exposed, empty} {
				b, _ := os.ReadFile(filepath.Join(d, noise.KeysFileName))
				before[d] = string(b)
			}
			code, stdout, stderr := runMain(t, nil, append([]string{"noise-key"}, tc.args...)...)
			if code != tc.code || stdout != "" {
				t.Errorf("noise-key %q: exit %d, stdout %q; want exit %d and nothing printed\n%s", tc.args, code, stdout, tc.code, stderr)
			}
			if tc.want != "" && stderr != tc.want {
				t.Errorf("noise-key %q said\n%q\nwant\n%q", tc.args, stderr, tc.want)
			}
			if tc.want == "" && !strings.Contains(stderr, "-rotat") {
				t.Errorf("noise-key %q said %q, want the flag named", tc.args, stderr)
			}
			for d, b := range before {
				if now, _ := os.ReadFile(filepath.Join(d, noise.KeysFileName)); string(now) != b {
					t.Errorf("noise-key %q changed %s", tc.args, filepath.Join(d, noise.KeysFileName))
				}
			}
		})
	}
}
