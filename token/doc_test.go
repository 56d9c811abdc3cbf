package token_test

import (
	"os"
	"strings"
	"testing"
)

// TestDocMatchesREADME: the formats drawn in doc.go, the token's and the
// bound token's, are the README's, line for line, so the two cannot drift
// apart.
func TestDocMatchesREADME(t *testing.T) {
	readme, err1 := os.ReadFile("../README.md")
	doc, err2 := os.ReadFile("doc.go")
	if err1 != nil || err2 != nil {
		t.Fatal(err1, err2)
	}
	var fromREADME, fromDoc []string
	in := false
	for _, line := range strings.Split(string(readme), "\n") {
		if strings.HasPrefix(line, "token = 0x01") {
			in = true
		}
		if in && strings.HasPrefix(line, "```") {
			break
		}
		if in {
			fromREADME = append(fromREADME, line)
		}
	}
	for _, line := range strings.Split(string(doc), "\n") {
		if s, ok := strings.CutPrefix(line, "//\t"); ok && (strings.HasPrefix(s, "token = ") || len(fromDoc) > 0) {
			fromDoc = append(fromDoc, s)
		} else if line == "//" && len(fromDoc) > 0 {
			fromDoc = append(fromDoc, "") // a blank line within the drawing
		} else if len(fromDoc) > 0 {
			break
		}
	}
	for len(fromDoc) > 0 && fromDoc[len(fromDoc)-1] == "" {
		fromDoc = fromDoc[:len(fromDoc)-1]
	}
	if !strings.Contains(strings.Join(fromDoc, "\n"), "bound token = 0x02") {
		t.Errorf("doc.go's drawing lacks the bound token:\n%s", strings.Join(fromDoc, "\n"))
	}
	if len(fromREADME) == 0 || strings.Join(fromDoc, "\n") != strings.Join(fromREADME, "\n") {
		t.Fatalf("doc.go draws\n%s\nthe README\n%s", strings.Join(fromDoc, "\n"), strings.Join(fromREADME, "\n"))
	}
}
