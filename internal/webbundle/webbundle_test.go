package webbundle

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// A bundle resolves relative requires ("./x", "../y", "dir" to
// "dir/index"), runs each module once, and leaves test files out; run
// with node when the machine has it, else checked by its text.
func TestBundle(t *testing.T) {
	dir := t.TempDir()
	files := map[string]string{
		"public/Terminal.js": `var core = require("../core"); var again = require("../core/index.js"); exports.Terminal = core.make(again === core);`,
		"core/index.js":      `var n = 0; exports.make = function (same) { n++; return "term:" + same + ":" + n; };` + "\n//# sourceMappingURL=index.js.map",
		"core/index.test.js": `require("chai");`,
	}
	for p, body := range files {
		_ = os.MkdirAll(filepath.Join(dir, filepath.Dir(p)), 0o755)
		_ = os.WriteFile(filepath.Join(dir, p), []byte(body), 0o644)
	}
	b, err := Bundle([]Root{{Dir: dir}}, `var window = typeof window === "undefined" ? globalThis : window; window.out = load("public/Terminal").Terminal;`)
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	if strings.Contains(s, "chai") || strings.Contains(s, "sourceMappingURL") || !strings.Contains(s, `defs["core/index"]`) {
		t.Fatalf("bundle:\n%s", s)
	}
	if node, err := exec.LookPath("node"); err == nil {
		out, err := exec.Command(node, "-e", s+"\nconsole.log(globalThis.out)").CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != "term:true:1" {
			t.Fatalf("node: %s %v", out, err)
		}
	}
	if _, err := Bundle([]Root{{Dir: t.TempDir()}}, ""); err == nil {
		t.Fatal("an empty tree bundled")
	}
}
