package testutil

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/client"
)

// NotebookLabels are the labels NotebookImage adds to the demo python
// image's, as Backend.AI's python images carry them (the service-ports
// label names the notebook on 8080, as upstream's images do; jupyterlab
// and tensorboard are not packaged for Debian bookworm, so the image
// does not offer them).
var NotebookLabels = map[string]string{
	"ai.backend.features":      "batch query uid-match user-input",
	"ai.backend.service-ports": "jupyter:http:8080",
}

// notebookRoots are the Debian packages NotebookImage is made of; their
// python3-*, libjs-*, node-* and fonts-* dependencies come along, and
// the shared libraries their extension modules load.
var notebookRoots = []string{"python3-notebook", "python3-ipykernel", "python3-matplotlib"}

var (
	notebookMu  sync.Mutex
	notebookRef string
)

// NotebookImage is the demo python image (PythonImage) plus this host's
// Debian Jupyter Notebook, ipykernel and matplotlib with everything
// they import, labelled as a Backend.AI python image whose apps include
// "jupyter". It is built once per content (bai-test/notebook:<hash>).
func NotebookImage(t testing.TB) string {
	t.Helper()
	for _, p := range notebookRoots {
		out, err := exec.Command("dpkg-query", "-W", "-f=${Status}", p).Output()
		if err != nil || !strings.HasSuffix(string(out), " installed") {
			Missing(t, "%s (apt-get install python3-notebook python3-ipykernel python3-matplotlib)", p)
		}
	}
	base := PythonImage(t)
	be := RequireDocker(t)
	notebookMu.Lock()
	defer notebookMu.Unlock()
	if notebookRef == "" {
		ctx, cancel := context.WithTimeout(context.Background(), Slow(5*time.Minute))
		defer cancel()
		ref, err := buildNotebookImage(ctx, be.Client(), base)
		if err != nil {
			t.Fatalf("build the notebook image: %v", err)
		}
		notebookRef = ref
	}
	return notebookRef
}

var depName = regexp.MustCompile(`^[a-z0-9][a-z0-9.+-]*`)

// debClosure is roots and the installed dependencies reached through
// packages that keep matches true.
func debClosure(roots []string, keep func(string) bool) ([]string, error) {
	seen := map[string]bool{}
	todo := append([]string(nil), roots...)
	for len(todo) > 0 {
		p := todo[len(todo)-1]
		todo = todo[:len(todo)-1]
		if seen[p] || !keep(p) {
			continue
		}
		out, err := exec.Command("dpkg-query", "-W", "-f=${Status}|${Depends}, ${Pre-Depends}", p).Output()
		if err != nil || !strings.Contains(strings.SplitN(string(out), "|", 2)[0], " installed") {
			continue // a virtual package, or an alternative not installed
		}
		seen[p] = true
		for _, dep := range strings.Split(strings.SplitN(string(out), "|", 2)[1], ",") {
			// The first installed alternative.
			for _, alt := range strings.Split(dep, "|") {
				n := depName.FindString(strings.TrimSpace(alt))
				if n == "" {
					continue
				}
				if st, err := exec.Command("dpkg-query", "-W", "-f=${Status}", n).Output(); err == nil && strings.HasSuffix(string(st), " installed") {
					todo = append(todo, n)
					break
				}
			}
		}
	}
	pkgs := make([]string, 0, len(seen))
	for p := range seen {
		pkgs = append(pkgs, p)
	}
	sort.Strings(pkgs)
	if len(pkgs) == 0 {
		return nil, fmt.Errorf("none of %v is installed", roots)
	}
	return pkgs, nil
}

func notebookPackage(p string) bool {
	if strings.HasSuffix(p, "-dev") || p == "python3" || p == "python3-minimal" || strings.HasPrefix(p, "python3.") {
		return false // the interpreter is the base image's
	}
	for _, pre := range []string{"python3-", "libjs-", "node-", "fonts-", "python-matplotlib-data", "python-tinycss2-common"} {
		if strings.HasPrefix(p, pre) {
			return true
		}
	}
	return false
}

func buildNotebookImage(ctx context.Context, cli *client.Client, base string) (string, error) {
	pkgs, err := debClosure(notebookRoots, notebookPackage)
	if err != nil {
		return "", err
	}
	out, err := exec.Command("dpkg", append([]string{"-L"}, pkgs...)...).Output()
	if err != nil {
		return "", fmt.Errorf("dpkg -L: %v", err)
	}
	type entry struct {
		path, link string // link: a symlink's target
		size       int64
		mtime      int64
		mode       os.FileMode
	}
	byPath := map[string]entry{}
	var sos []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		p := sc.Text()
		if !strings.HasPrefix(p, "/usr/") && !strings.HasPrefix(p, "/etc/") {
			continue
		}
		if strings.HasPrefix(p, "/usr/share/doc/") || strings.HasPrefix(p, "/usr/share/man/") || strings.HasPrefix(p, "/usr/share/lintian/") || strings.Contains(p, "/__pycache__/") {
			continue
		}
		st, err := os.Lstat(p)
		if err != nil || st.IsDir() {
			continue
		}
		e := entry{path: p, size: st.Size(), mtime: st.ModTime().UnixNano(), mode: st.Mode()}
		if st.Mode()&os.ModeSymlink != 0 {
			if e.link, err = os.Readlink(p); err != nil {
				continue
			}
		} else if !st.Mode().IsRegular() {
			continue
		} else if strings.HasSuffix(p, ".so") || strings.Contains(p, ".so.") {
			sos = append(sos, p)
		}
		byPath[p] = e
	}
	// The shared libraries the extension modules load (OpenBLAS, libzmq,
	// freetype, ...), where the host's loader finds them.
	for _, so := range sos {
		out, err := exec.Command("ldd", so).Output()
		if err != nil {
			continue
		}
		lsc := bufio.NewScanner(bytes.NewReader(out))
		for lsc.Scan() {
			for _, f := range strings.Fields(lsc.Text()) {
				if !strings.HasPrefix(f, "/") {
					continue
				}
				if _, ok := byPath[f]; ok {
					continue
				}
				real, err := filepath.EvalSymlinks(f)
				if err != nil {
					continue
				}
				st, err := os.Stat(real)
				if err != nil {
					continue
				}
				// Under the name the loader asked for, with the content
				// of what it points at.
				byPath[f] = entry{path: real, size: st.Size(), mtime: st.ModTime().UnixNano(), mode: st.Mode()}
			}
		}
	}
	names := make([]string, 0, len(byPath))
	for n := range byPath {
		names = append(names, n)
	}
	sort.Strings(names)
	labels := make([]string, 0, len(NotebookLabels))
	for k := range NotebookLabels {
		labels = append(labels, k)
	}
	sort.Strings(labels)

	h := sha256.New()
	fmt.Fprintln(h, base, "notebook v1")
	for _, k := range labels {
		fmt.Fprintf(h, "label %s=%s\n", k, NotebookLabels[k])
	}
	for _, n := range names {
		e := byPath[n]
		fmt.Fprintf(h, "%s %s %s %d %d\n", n, e.path, e.link, e.size, e.mtime)
	}
	ref := "bai-test/notebook:" + hex.EncodeToString(h.Sum(nil))[:12]
	if _, err := cli.ImageInspect(ctx, ref); err == nil {
		return ref, nil
	}

	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	df := fmt.Sprintf("FROM %s\nCOPY rootfs/ /\n", base)
	for _, k := range labels {
		df += fmt.Sprintf("LABEL %s=%q\n", k, NotebookLabels[k])
	}
	if err := tw.WriteHeader(&tar.Header{Name: "Dockerfile", Mode: 0o644, Size: int64(len(df))}); err != nil {
		return "", err
	}
	if _, err := tw.Write([]byte(df)); err != nil {
		return "", err
	}
	// Scripts and the kernelspec call python3.
	if err := tw.WriteHeader(&tar.Header{Name: "rootfs/usr/bin/python3", Typeflag: tar.TypeSymlink, Linkname: "python3.11", Mode: 0o777}); err != nil {
		return "", err
	}
	for _, n := range names {
		e := byPath[n]
		name := "rootfs" + n
		if n == "/usr/bin/python3" {
			continue
		}
		if e.link != "" {
			if err := tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeSymlink, Linkname: e.link, Mode: 0o777}); err != nil {
				return "", err
			}
			continue
		}
		data, err := os.ReadFile(e.path)
		if err != nil {
			return "", err
		}
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: int64(e.mode.Perm()), Size: int64(len(data))}); err != nil {
			return "", err
		}
		if _, err := tw.Write(data); err != nil {
			return "", err
		}
	}
	if err := tw.Close(); err != nil {
		return "", err
	}
	return ref, dockerBuild(ctx, cli, ref, &buf)
}
