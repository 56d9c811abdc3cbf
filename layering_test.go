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
// code may import (the arrows in DESIGN.md). A folder missing here may import
// nothing of ours, except cmd, which may import everything.
var allowed = map[string][]string{
	"protocol": {},
	"storage":  {},
	"delivery": {"protocol", "storage"},
	"gateway":  {"protocol", "delivery"},
	"bench":    {"protocol"},
	// node owns the process: it configures, starts and stops the others.
	"node": {"protocol", "storage", "delivery", "gateway"},
}

// violations returns every import under root that breaks an arrow, as
// "file imports path".
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
		if !strings.HasSuffix(rel, ".go") || strings.HasSuffix(rel, "_test.go") || !strings.Contains(rel, "/") {
			return nil
		}
		top := strings.Split(rel, "/")[0]
		if top == "cmd" {
			return nil
		}
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		for _, imp := range f.Imports {
			p := strings.Trim(imp.Path.Value, `"`)
			if !strings.HasPrefix(p, module+"/") {
				continue
			}
			dep := strings.Split(strings.TrimPrefix(p, module+"/"), "/")[0]
			if dep != top && !slices.Contains(allowed[top], dep) {
				bad = append(bad, rel+" imports "+p)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return bad
}

// TestDependencyDirections fails when a package imports one of ours that
// DESIGN.md does not allow, e.g. delivery importing gateway.
func TestDependencyDirections(t *testing.T) {
	for _, v := range violations(t, ".") {
		t.Errorf("%s: not an arrow of DESIGN.md", v)
	}
}

// TestDependencyCheckCatches proves the check above can fail: a tree where
// delivery imports gateway and storage imports protocol is flagged twice.
func TestDependencyCheckCatches(t *testing.T) {
	root := t.TempDir()
	files := map[string]string{
		"delivery/bad.go": "package delivery\nimport _ \"switchboard/gateway\"\n",
		"storage/bad.go":  "package storage\nimport _ \"switchboard/protocol\"\n",
		"gateway/ok.go":   "package gateway\nimport _ \"switchboard/delivery\"\n",
		"cmd/x/ok.go":     "package main\nimport _ \"switchboard/gateway\"\n",
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
	want := []string{"delivery/bad.go imports switchboard/gateway", "storage/bad.go imports switchboard/protocol"}
	if !slices.Equal(got, want) {
		t.Fatalf("violations = %q, want %q", got, want)
	}
}
