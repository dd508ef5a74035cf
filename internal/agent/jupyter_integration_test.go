package agent

import (
	"encoding/base64"
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/bai-agent/bai-agent/internal/testutil"
)

var ansi = regexp.MustCompile("\x1b\\[[0-9;]*m")

// records returns the console records of one kind.
func records(res map[string]any, kind string) []any {
	var out []any
	for _, c := range res["console"].([]any) {
		if rec := c.([]any); rec[0] == kind {
			out = append(out, rec[1])
		}
	}
	return out
}

// Query mode of a python kernel whose image has ipykernel (Debian's
// python3.11 + python3-ipykernel): the agent's execute path (what the
// execute RPC calls) reaches the runner, which runs the code in the
// image's Jupyter kernel. Output, tracebacks and exit codes, state
// between cells, input(), IPython's ! and % syntax and inline plots.
func TestRunnerJupyterKernel_Integration(t *testing.T) {
	if _, err := os.Stat("/usr/lib/python3/dist-packages/matplotlib"); err != nil {
		testutil.Missing(t, "python3-matplotlib (apt-get install python3-matplotlib)")
	}
	e := newEnv(t, nil)
	img := testutil.JupyterImage(t)
	uid, gid := 1800, 1800
	info := e.create(func(c *CreationConfig) { c.Image.Canonical = img; c.UID, c.MainGID = &uid, &gid })
	run := func(code string) map[string]any {
		t.Helper()
		res := e.exec(info.ID, "", "query", code, flushIn(60*time.Second))
		if res["status"] != "finished" {
			t.Fatalf("%q: %v", code, res)
		}
		return res
	}
	for _, tc := range []struct {
		code, stdout string
		exit         int
	}{
		{"print(1)", "1\n", 0},
		{"x = 41", "", 0},
		{"x + 1", "42", 0},
		{"import os; print(os.getuid())", "1800\n", 0},
		{"!echo hi", "hi\r\n", 0}, // IPython runs ! commands on a pty
	} {
		res := run(tc.code)
		if res["exitCode"] != tc.exit || console(res, "stdout") != tc.stdout || console(res, "stderr") != "" {
			t.Errorf("%q: exit %v stdout %q stderr %q", tc.code, res["exitCode"], console(res, "stdout"), console(res, "stderr"))
		}
	}
	// An IPython traceback (ANSI-coloured) on stderr, exit code 1; the
	// namespace survives the error.
	res := run("def boom():\n    raise ValueError('no good')\nboom()")
	if errs := ansi.ReplaceAllString(console(res, "stderr"), ""); res["exitCode"] != 1 || !strings.Contains(errs, "ValueError") || !strings.Contains(errs, "no good") || !strings.Contains(errs, "boom()") {
		t.Fatalf("raising cell: exit %v stderr %q", res["exitCode"], errs)
	}
	if res := run("raise SystemExit(4)"); res["exitCode"] != 4 {
		t.Fatalf("SystemExit(4): %v", res)
	}
	if res := run("print(x)"); console(res, "stdout") != "41\n" {
		t.Fatalf("state after errors: %v", res)
	}
	// A line magic.
	if res := run("%timeit -n1 -r1 pass"); res["exitCode"] != 0 || !strings.Contains(console(res, "stdout"), "per loop") {
		t.Fatalf("%%timeit: %v", res)
	}
	// input(): waiting-input with the prompt, then the reply finishes it.
	res = e.exec(info.ID, "in", "query", "n = input('name? ')\nprint('hi', n)", flushIn(60*time.Second))
	if res["status"] != "waiting-input" || fmt.Sprint(res["options"]) != "map[is_password:false]" || console(res, "stdout") != "name? " {
		t.Fatalf("input: %v", res)
	}
	res = e.exec(info.ID, "in", "input", "bob", flushIn(60*time.Second))
	if res["status"] != "finished" || res["exitCode"] != 0 || console(res, "stdout") != "hi bob\n" {
		t.Fatalf("after input: %v", res)
	}
	// Plots come out inline, as PNG media, with and without the magic
	// (ipykernel makes the inline backend matplotlib's default).
	for _, code := range []string{
		"import matplotlib.pyplot as plt\nplt.plot([1, 2, 3], [1, 4, 9])\nplt.show()",
		"%matplotlib inline\nplt.figure(figsize=(1, 1))\nplt.plot([0, 1])\nplt.show()",
	} {
		res := run(code)
		media := records(res, "media")
		if res["exitCode"] != 0 || len(media) != 1 {
			t.Fatalf("%q: exit %v, %d media records; stderr %q", code, res["exitCode"], len(media), console(res, "stderr"))
		}
		// ["media", [mime type, data URL]] as upstream's console holds it.
		m, _ := media[0].([]any)
		if len(m) != 2 {
			t.Fatalf("media record %v", media[0])
		}
		typ, _ := m[0].(string)
		data, _ := m[1].(string)
		png, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(data, "data:image/png;base64,"))
		if typ != "image/png" || err != nil || !strings.HasPrefix(string(png), "\x89PNG\r\n\x1a\n") {
			t.Fatalf("%q: media %s %.60q (%v)", code, typ, data, err)
		}
	}
}
