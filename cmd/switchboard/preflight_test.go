package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"switchboard/preflight"
)

func TestPreflightFlags(t *testing.T) {
	var out bytes.Buffer
	if code := exitCode("preflight", runPreflight([]string{"-h"}, &out, preflight.Probe{})); code != 0 {
		t.Errorf("-h exits %d, want 0", code)
	}
	if code := exitCode("preflight", runPreflight([]string{"--no-such-flag"}, &out, preflight.Probe{})); code != 2 {
		t.Errorf("an unknown flag exits %d, want 2", code)
	}
	if code := exitCode("preflight", runPreflight([]string{"extra"}, &out, preflight.Probe{})); code != 2 {
		t.Errorf("an argument exits %d, want 2", code)
	}
	for _, n := range []string{"-1", "100001"} {
		if code := exitCode("preflight", runPreflight([]string{"--sync-probe", n}, &out, preflight.Probe{})); code != 2 {
			t.Errorf("--sync-probe %s exits %d, want 2", n, code)
		}
	}
	if out.Len() != 0 {
		t.Errorf("nothing is reported on a bad command line, got %q", out.String())
	}
}

// TestPreflightThisHost runs the command on this machine, as text and as
// JSON: the open-file figure is the process's limit, the binding limit's
// count is the report's, and the text marks it.
func TestPreflightThisHost(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	var js bytes.Buffer
	if err := runPreflight([]string{"--data", data, "--json", "--sync-probe", "20"}, &js, preflight.Probe{}); err != nil {
		t.Fatal(err)
	}
	var r struct {
		Connections int64  `json:"connections"`
		Binding     string `json:"binding"`
		Facts       struct {
			NofileSoft uint64 `json:"nofile_soft"`
			DiskPath   string `json:"disk_path"`
			Sync       *struct {
				Count int `json:"count"`
			} `json:"sync"`
		} `json:"facts"`
		Limits []struct {
			Name        string `json:"name"`
			Setting     string `json:"setting"`
			Connections int64  `json:"connections"`
			Binding     bool   `json:"binding"`
		} `json:"limits"`
	}
	if err := json.Unmarshal(js.Bytes(), &r); err != nil {
		t.Fatalf("%v: %s", err, js.String())
	}
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	if r.Facts.NofileSoft != lim.Cur {
		t.Errorf("nofile_soft %d, getrlimit says %d", r.Facts.NofileSoft, lim.Cur)
	}
	if want := filepath.Dir(data); r.Facts.DiskPath != want {
		t.Errorf("disk_path %q, want %q: --data's nearest existing parent", r.Facts.DiskPath, want)
	}
	if r.Facts.Sync == nil || r.Facts.Sync.Count != 20 {
		t.Errorf("facts.sync %+v, want 20 durable writes timed", r.Facts.Sync)
	}
	setting := ""
	for _, l := range r.Limits {
		if l.Binding {
			if l.Name != r.Binding || l.Connections != r.Connections {
				t.Errorf("limit %s (%d connections) marked binding; the report says %s (%d)", l.Name, l.Connections, r.Binding, r.Connections)
			}
			setting = l.Setting
		}
	}

	var text bytes.Buffer
	if err := runPreflight([]string{"--data", data, "--sync-probe", "0"}, &text, preflight.Probe{}); err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(text.String(), "\n") {
		if strings.HasSuffix(strings.TrimSpace(line), "<- binds first") && !strings.HasPrefix(line, setting) {
			t.Errorf("text marks %q as binding, JSON says %s", line, setting)
		}
	}
	if !strings.Contains(text.String(), "One server process can hold ") {
		t.Errorf("text has no summary:\n%s", text.String())
	}
	if strings.Contains(text.String(), "Durable writes") {
		t.Errorf("--sync-probe 0 timed durable writes:\n%s", text.String())
	}
}

// A probe that cannot read the host is an error, not a report of zeros.
func TestPreflightProbeError(t *testing.T) {
	var out bytes.Buffer
	probe := preflight.Probe{Rlimit: func() (uint64, uint64, error) { return 0, 0, unix.EPERM }}
	err := runPreflight([]string{"--data", filepath.Join(t.TempDir(), "data"), "--sync-probe", "0"}, &out, probe)
	if !errors.Is(err, unix.EPERM) || out.Len() != 0 {
		t.Errorf("getrlimit failing: %v, output %q; want its error and no report", err, out.String())
	}
}
