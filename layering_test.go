// Package switchboard_test holds repository-wide checks. There is no
// switchboard package: this folder only anchors the module.
package switchboard_test

import (
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"sort"
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
}

// TestDependencyDirections fails when a package imports one of ours that
// DESIGN.md does not allow, e.g. delivery importing gateway.
func TestDependencyDirections(t *testing.T) {
	seen := map[string]bool{}
	err := filepath.WalkDir(".", func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if path != "." && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		top := strings.Split(filepath.ToSlash(path), "/")[0]
		if top == "cmd" || !strings.Contains(path, "/") {
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
			if dep == top {
				continue
			}
			ok := false
			for _, a := range allowed[top] {
				ok = ok || a == dep
			}
			if !ok {
				t.Errorf("%s imports %s: %s may import only %v", path, p, top, allowed[top])
			}
			seen[top+" -> "+dep] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	arrows := make([]string, 0, len(seen))
	for a := range seen {
		arrows = append(arrows, a)
	}
	sort.Strings(arrows)
	t.Logf("arrows in use: %v", arrows)
}
