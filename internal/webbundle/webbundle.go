package webbundle

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
)

// Root is a directory of modules: each .js file under Dir (test files
// excepted) becomes the module Prefix + its path without ".js".
type Root struct {
	Dir, Prefix string
}

var sourceMap = regexp.MustCompile(`(?m)^//# sourceMappingURL=.*$`)

// Bundle wraps every module of roots in a function, adds a require()
// that resolves relative paths (and "dir" to "dir/index"), and ends with
// tail, the script that loads the entry points (load(id) returns a
// module's exports).
func Bundle(roots []Root, tail string) ([]byte, error) {
	mods := map[string][]byte{}
	for _, r := range roots {
		err := filepath.WalkDir(r.Dir, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() || !strings.HasSuffix(p, ".js") || strings.HasSuffix(p, ".test.js") {
				return nil
			}
			rel, err := filepath.Rel(r.Dir, p)
			if err != nil {
				return err
			}
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			mods[r.Prefix+strings.TrimSuffix(filepath.ToSlash(rel), ".js")] = sourceMap.ReplaceAll(b, nil)
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("bundle %s: %w", r.Dir, err)
		}
	}
	if len(mods) == 0 {
		return nil, fmt.Errorf("bundle: no modules found")
	}
	ids := make([]string, 0, len(mods))
	for id := range mods {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	var b bytes.Buffer
	b.WriteString("/* Bundled by bai-agent's webbundle from CommonJS modules; see their licences. */\n(function () {\nvar defs = {}, cache = {};\n")
	for _, id := range ids {
		q, _ := json.Marshal(id)
		fmt.Fprintf(&b, "defs[%s] = function (exports, require, module) {\n", q)
		b.Write(mods[id])
		b.WriteString("\n};\n")
	}
	b.WriteString(`function resolve(from, req) {
  if (req.charAt(0) !== ".") return req;
  var parts = from.split("/");
  parts.pop();
  req.split("/").forEach(function (p) {
    if (p === "..") parts.pop(); else if (p !== ".") parts.push(p);
  });
  var id = parts.join("/").replace(/\.js$/, "");
  if (!(id in defs) && (id + "/index") in defs) id += "/index";
  return id;
}
function load(id) {
  if (cache[id]) return cache[id].exports;
  if (!(id in defs)) throw new Error("module not found: " + id);
  var m = cache[id] = {exports: {}};
  defs[id].call(m.exports, m.exports, function (r) { return load(resolve(id, r)); }, m);
  return m.exports;
}
`)
	b.WriteString(tail)
	b.WriteString("\n})();\n")
	return b.Bytes(), nil
}

// Debian's locations of xterm.js 3 (node-xterm) and its fit addon and
// stylesheet (libjs-xterm).
const (
	XtermLib    = "/usr/share/nodejs/xterm/lib"
	XtermAssets = "/usr/share/javascript/xterm"
)

// Xterm bundles Debian's xterm.js and its fit addon into one script that
// defines window.Terminal and window.fit.
func Xterm(lib, assets string) ([]byte, error) {
	return Bundle([]Root{{Dir: lib}, {Dir: filepath.Join(assets, "addons", "fit"), Prefix: "addons/fit/"}},
		`window.Terminal = load("public/Terminal").Terminal;
window.fit = load("addons/fit/fit");`)
}

// WriteXtermAssets writes xterm.js (bundled), xterm.css and fit.js (an
// empty stand-in: the addon is in the bundle) into dir.
func WriteXtermAssets(lib, assets, dir string) error {
	js, err := Xterm(lib, assets)
	if err != nil {
		return err
	}
	css, err := os.ReadFile(filepath.Join(assets, "xterm.css"))
	if err != nil {
		return err
	}
	for name, body := range map[string][]byte{"xterm.js": js, "xterm.css": css, "fit.js": []byte("/* the fit addon is bundled into xterm.js */\n")} {
		p := filepath.Join(dir, name)
		// Unchanged files are left alone, and new ones replace the old in
		// one rename: concurrent builds embed either, never half a file.
		if old, err := os.ReadFile(p); err == nil && bytes.Equal(old, body) {
			continue
		}
		tmp, err := os.CreateTemp(dir, "."+name+".*")
		if err != nil {
			return err
		}
		_, werr := tmp.Write(body)
		cerr := tmp.Close()
		if werr == nil {
			werr = cerr
		}
		if werr == nil {
			werr = os.Chmod(tmp.Name(), 0o644)
		}
		if werr == nil {
			werr = os.Rename(tmp.Name(), p)
		}
		if werr != nil {
			_ = os.Remove(tmp.Name())
			return werr
		}
	}
	return nil
}
