// Package switchboard_test holds repository-wide checks. There is no
// switchboard package: this folder only anchors the module.
package switchboard_test

import (
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const module = "switchboard"

// allowed lists, for each top-level folder, the folders of ours its non-test
// code may import: the arrows of docs/DESIGN.md ("Packages and their
// directions"). A folder missing here may import nothing of ours, except cmd,
// which may import everything. Tests may import any folder of ours.
var allowed = map[string][]string{
	"protocol": {},
	"storage":  {},
	"delivery": {"protocol", "storage"},
	// token keeps its keys in a keys file, as noise does.
	"token":   {"internal"},
	"gateway": {"protocol", "delivery", "token", "noise", "handover"},
	// client is the library an application embeds: it speaks the protocol,
	// plain or over Noise, and may mint tokens, nothing of the server.
	"client": {"protocol", "token", "noise"},
	// bench places its users on a cluster's nodes by their homes, and
	// speaks Noise on its own loops.
	"bench": {"protocol", "token", "client", "home", "noise"},
	// chat is an application on the client library, as a phone's app is.
	"chat": {"protocol", "client"},
	// node owns the process: it configures, starts and stops the others.
	"node": {"protocol", "storage", "delivery", "gateway", "token", "cluster", "noise", "handover"},
	// preflight reads the host; the figures it shares with the gateway
	// (the reserve of files) it restates and cites.
	"preflight": {},
	// top reads servers only through their metrics, over HTTP.
	"top": {},
	// cluster carries opaque payloads between nodes; what they mean is
	// delivery's, which reaches it through its own Peers interface. It
	// routes by home, the rendezvous hashing it shares with bench.
	"cluster": {"home"},
	// home is the arithmetic of a mailbox's home node, free of NATS.
	"home": {},
	// noise is the encrypted transport: handshakes over the preface, and
	// transport messages around frames.
	"noise": {"protocol", "internal"},
	// handover is what two processes say to move connections: records and
	// sockets, nothing of the parts that make or adopt them.
	"handover": {},
}

// confined lists the third-party modules that one folder alone may import
// (the terminal UI: the two tools that draw screens), in its code and its
// tests, so that replacing the library touches one package: the network
// library stays in gateway, the database in storage, NATS (server and
// client) in cluster.
// cmd is held to this too: it configures them through gateway.Config and
// storage.Config.
var confined = []struct {
	module, name, owner string // owner: the folder, or "a and b"
}{
	{"github.com/panjf2000/gnet", "gnet", "gateway"},
	{"github.com/dgraph-io/badger", "Badger", "storage"},
	{"charm.land/bubbletea", "bubbletea", "chat and top"},
	{"charm.land/lipgloss", "lipgloss", "chat and top"},
	{"github.com/nats-io/nats-server", "the NATS server", "cluster"},
	{"github.com/nats-io/nats.go", "the NATS client", "cluster"},
	{"github.com/flynn/noise", "the Noise handshakes", "noise"},
}

// violations returns every import under root that breaks an arrow or a
// confinement, as "file imports path: why".
func violations(t *testing.T, root string) []string {
	t.Helper()
	var bad []string
	err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			if rel != "." && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(rel, ".go") || !strings.Contains(rel, "/") {
			return nil
		}
		top := strings.Split(rel, "/")[0]
		isTest := strings.HasSuffix(rel, "_test.go")
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		for _, imp := range f.Imports {
			p := strings.Trim(imp.Path.Value, `"`)
			if why := confinement(top, p); why != "" {
				bad = append(bad, rel+" imports "+p+": "+why)
				continue
			}
			if isTest || top == "cmd" || !strings.HasPrefix(p, module+"/") {
				continue
			}
			dep := strings.Split(strings.TrimPrefix(p, module+"/"), "/")[0]
			if dep != top && !slices.Contains(allowed[top], dep) {
				may := "nothing of ours"
				if len(allowed[top]) > 0 {
					may = strings.Join(allowed[top], ", ")
				}
				bad = append(bad, rel+" imports "+p+": "+top+" may import "+may)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return bad
}

// confinement says why folder top may not import path p, or "" if it may.
func confinement(top, p string) string {
	for _, c := range confined {
		if (p == c.module || strings.HasPrefix(p, c.module+"/")) && !slices.Contains(strings.Split(c.owner, " and "), top) {
			return "only " + c.owner + " may import " + c.name
		}
	}
	return ""
}

// TestDependencyDirections fails when a package imports one of ours that
// docs/DESIGN.md does not allow (e.g. delivery importing gateway), or when a
// folder other than gateway imports gnet, one other than storage imports
// Badger, or one other than cluster imports NATS.
func TestDependencyDirections(t *testing.T) {
	for _, v := range violations(t, ".") {
		t.Errorf("%s (see docs/DESIGN.md, \"Packages and their directions\")", v)
	}
}

// TestDependencyCheckCatches proves the check above can fail: in a synthetic
// tree, every file named bad breaks a rule and is flagged once, with the
// rule it breaks; no file named ok is.
func TestDependencyCheckCatches(t *testing.T) {
	root := t.TempDir()
	files := map[string]string{
		"delivery/bad.go":        "package delivery\nimport _ \"switchboard/gateway\"\n",
		"storage/bad.go":         "package storage\nimport _ \"switchboard/protocol\"\n",
		"delivery/gnet_bad.go":   "package delivery\nimport _ \"github.com/panjf2000/gnet/v2\"\n",
		"cmd/x/badger_bad.go":    "package main\nimport _ \"github.com/dgraph-io/badger/v4\"\n",
		"bench/x_bad_test.go":    "package bench\nimport _ \"github.com/dgraph-io/badger/v4/options\"\n",
		"gateway/ok.go":          "package gateway\nimport _ \"switchboard/delivery\"\nimport _ \"github.com/panjf2000/gnet/v2\"\n",
		"gateway/ok_test.go":     "package gateway\nimport _ \"switchboard/storage\"\n",
		"storage/ok.go":          "package storage\nimport _ \"github.com/dgraph-io/badger/v4\"\n",
		"storage/sub/ok_test.go": "package sub\nimport _ \"github.com/dgraph-io/badger/v4\"\n",
		"cmd/x/ok.go":            "package main\nimport _ \"switchboard/gateway\"\nimport _ \"switchboard/storage\"\n",
		"protocol/ok.go":         "package protocol\nimport _ \"github.com/panjf2000/gnetwork\"\n",
		"client/tea_bad.go":      "package client\nimport _ \"charm.land/bubbletea/v2\"\n",
		"chat/ok.go":             "package chat\nimport _ \"charm.land/bubbletea/v2\"\nimport _ \"switchboard/client\"\n",
		"delivery/nats_bad.go":   "package delivery\nimport _ \"github.com/nats-io/nats.go\"\n",
		"node/natsd_bad_test.go": "package node\nimport _ \"github.com/nats-io/nats-server/v2/server\"\n",
		"cluster/bad.go":         "package cluster\nimport _ \"switchboard/delivery\"\n",
		"cluster/ok.go":          "package cluster\nimport _ \"github.com/nats-io/nats.go\"\nimport _ \"github.com/nats-io/nats-server/v2/server\"\n",
	}
	for name, src := range files {
		path := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got := violations(t, root)
	slices.Sort(got)
	want := []string{
		"bench/x_bad_test.go imports github.com/dgraph-io/badger/v4/options: only storage may import Badger",
		"client/tea_bad.go imports charm.land/bubbletea/v2: only chat and top may import bubbletea",
		"cluster/bad.go imports switchboard/delivery: cluster may import home",
		"cmd/x/badger_bad.go imports github.com/dgraph-io/badger/v4: only storage may import Badger",
		"delivery/bad.go imports switchboard/gateway: delivery may import protocol, storage",
		"delivery/gnet_bad.go imports github.com/panjf2000/gnet/v2: only gateway may import gnet",
		"delivery/nats_bad.go imports github.com/nats-io/nats.go: only cluster may import the NATS client",
		"node/natsd_bad_test.go imports github.com/nats-io/nats-server/v2/server: only cluster may import the NATS server",
		"storage/bad.go imports switchboard/protocol: storage may import nothing of ours",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("violations:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
