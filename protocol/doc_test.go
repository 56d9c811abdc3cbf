package protocol

import (
	"bufio"
	"os"
	"regexp"
	"strings"
	"testing"
)

const protocolDoc = "../docs/PROTOCOL.md"

// TestProtocolDocExamples checks every worked example in docs/PROTOCOL.md
// against vectors.json (frames and tokens): an example follows a `<!-- vector: NAME -->` line,
// and the hex bytes at the start of its lines ("…" elides the rest of a
// field) must spell the vector's hex. It also checks every frame type has
// an example, so the document cannot drift from the code.
func TestProtocolDocExamples(t *testing.T) {
	doc, err := os.Open(protocolDoc)
	if err != nil {
		t.Skipf("no %s: %v", protocolDoc, err)
	}
	defer doc.Close()
	file := loadVectors(t)
	vectors := map[string]vectorFrame{}
	for _, v := range file.Frames {
		vectors[v.Name] = v
	}
	for _, v := range file.Tokens {
		vectors[v.Name] = vectorFrame{Name: v.Name, Type: "TOKEN", Hex: v.Hex}
	}
	marker := regexp.MustCompile(`^<!-- vector: (.+) -->$`)
	hexByte := regexp.MustCompile(`^[0-9a-f]{2}$`)
	covered := map[string]bool{}
	var (
		name    string // the vector being read, "" outside one
		inBlock bool
		pattern strings.Builder
	)
	sc := bufio.NewScanner(doc)
	for line := 1; sc.Scan(); line++ {
		text := sc.Text()
		if m := marker.FindStringSubmatch(text); m != nil {
			name = m[1]
			continue
		}
		if name == "" {
			continue
		}
		if strings.HasPrefix(text, "```") {
			if !inBlock {
				inBlock = true
				pattern.Reset()
				continue
			}
			v, ok := vectors[name]
			if !ok {
				t.Errorf("line %d: no vector named %q", line, name)
			} else if !regexp.MustCompile("^" + pattern.String() + "$").MatchString(v.Hex) {
				t.Errorf("line %d: example of %q does not spell its hex %s", line, name, v.Hex)
			} else {
				covered[v.Type] = true
			}
			name, inBlock = "", false
			continue
		}
		if !inBlock {
			continue
		}
		for _, tok := range strings.Fields(text) {
			if tok == "…" {
				pattern.WriteString("(?:[0-9a-f]{2})*?")
				break
			}
			if !hexByte.MatchString(tok) {
				break
			}
			pattern.WriteString(tok)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	for x := TypeLogin; x <= typeMax; x++ {
		if !covered[x.String()] {
			t.Errorf("%s has no checked example of %v", protocolDoc, x)
		}
	}
	for _, what := range []string{"PREFACE", "TOKEN"} {
		if !covered[what] {
			t.Errorf("%s has no checked example of a %s", protocolDoc, strings.ToLower(what))
		}
	}
}
