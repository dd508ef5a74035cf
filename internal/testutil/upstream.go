package testutil

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/moby/moby/client"
)

// UpstreamSrcEnv names the variable that points the interop tests at a
// checkout of Backend.AI's sources (its src directory, holding
// ai/backend/kernel). The Python agent's kernel runner is not packaged for
// Debian and no Python registry is reachable from CI, and its code may not
// be committed here, so the tests that drive it run only when a developer
// names a checkout.
const UpstreamSrcEnv = "BAI_UPSTREAM_SRC"

// distPackages are the top-level modules (under Debian's
// /usr/lib/python3/dist-packages) that Backend.AI's kernel runner and the
// ipykernel it runs query-mode code in import: python3-zmq, -msgpack,
// -janus, -attr, -jupyter-client, -ipykernel and what those depend on.
var distPackages = []string{
	"zmq", "msgpack", "janus", "attr", "attrs", "typing_extensions.py",
	"jupyter_client", "jupyter_core", "traitlets", "tornado", "dateutil", "six.py", "entrypoints.py",
	"ipykernel", "ipykernel_launcher.py", "IPython", "psutil", "nest_asyncio.py",
	"matplotlib_inline", "pexpect", "ptyprocess", "prompt_toolkit", "pygments", "jedi", "parso",
	"decorator.py", "pickleshare.py", "backcall", "stack_data", "executing", "asttokens", "pure_eval",
	"wcwidth", "packaging",
}

// olderRunnerPackages are what 23.09's runner imports besides
// (python3-async-timeout, python3-uvloop), copied when installed.
var olderRunnerPackages = []string{"async_timeout", "uvloop"}

// plotPackages are Debian's python3-matplotlib and what it imports,
// copied when installed, so that a kernel can draw an inline plot.
var plotPackages = []string{"matplotlib", "mpl_toolkits", "numpy", "PIL", "pyparsing", "cycler.py",
	"kiwisolver", "fontTools", "contourpy"}

// plotData are matplotlib's data files and rc file where Debian puts
// them (outside dist-packages).
var plotData = []string{"/usr/share/matplotlib/mpl-data", "/etc/matplotlibrc"}

// UpstreamRunnerImage is the demo python image plus Backend.AI's own
// kernel runner (ai.backend.kernel from the checkout in $BAI_UPSTREAM_SRC,
// unmodified, at /opt/backend.ai-src), the Debian modules it needs, and
// ipykernel's kernelspec, so that a container can run the Python agent's
// runner exactly as its entrypoint does. The test is skipped when the
// variable is unset; a checkout without the runner fails it.
func UpstreamRunnerImage(t testing.TB) (ref, src string) {
	t.Helper()
	src = os.Getenv(UpstreamSrcEnv)
	if src == "" {
		t.Skipf("set %s to a Backend.AI checkout's src directory to run the Python agent's kernel runner", UpstreamSrcEnv)
	}
	kdir := filepath.Join(src, "ai", "backend", "kernel")
	if _, err := os.Stat(filepath.Join(kdir, "__main__.py")); err != nil {
		t.Fatalf("%s=%s: no ai/backend/kernel/__main__.py there", UpstreamSrcEnv, src)
	}
	const dist = "/usr/lib/python3/dist-packages"
	for _, p := range distPackages {
		if _, err := os.Stat(filepath.Join(dist, p)); err != nil {
			t.Fatalf("%s/%s missing (apt-get install python3-zmq python3-msgpack python3-janus python3-attr python3-jupyter-client python3-ipykernel)", dist, p)
		}
	}
	base := PythonImage(t)
	be := RequireDocker(t)
	ref, err := buildUpstreamImage(be.Client(), base, kdir)
	if err != nil {
		t.Fatalf("build the upstream runner image: %v", err)
	}
	return ref, src
}

var (
	jupyterMu  sync.Mutex
	jupyterRef string
)

// JupyterImage is the demo python image plus Debian's ipykernel (the
// same dist-packages UpstreamRunnerImage copies) and its python3
// kernelspec, without Backend.AI's runner: an image whose query mode
// runs in a Jupyter kernel under our runner.
func JupyterImage(t testing.TB) string {
	t.Helper()
	const dist = "/usr/lib/python3/dist-packages"
	// What ipykernel needs at the least; the rest of distPackages is
	// copied where installed.
	need := []string{"/usr/share/jupyter/kernels/python3/kernel.json", "ipykernel", "ipykernel_launcher.py", "IPython",
		"jupyter_client", "jupyter_core", "traitlets", "tornado", "zmq"}
	for _, p := range need {
		if !filepath.IsAbs(p) {
			p = filepath.Join(dist, p)
		}
		if _, err := os.Stat(p); err != nil {
			Missing(t, "%s (apt-get install python3-ipykernel python3-jupyter-client)", p)
		}
	}
	base := PythonImage(t)
	be := RequireDocker(t)
	jupyterMu.Lock()
	defer jupyterMu.Unlock()
	if jupyterRef == "" {
		ref, err := buildPackagesImage(be.Client(), base, "", "bai-test/jupyter-python")
		if err != nil {
			t.Fatalf("build the Jupyter python image: %v", err)
		}
		jupyterRef = ref
	}
	return jupyterRef
}

func buildUpstreamImage(cli *client.Client, base, kdir string) (string, error) {
	return buildPackagesImage(cli, base, kdir, "bai-test/upstream-runner")
}

// buildPackagesImage is base plus the dist-packages, the kernelspec and,
// when kdir is set, Backend.AI's runner sources, tagged repo:<content hash>.
func buildPackagesImage(cli *client.Client, base, kdir, repo string) (string, error) {
	const dist = "/usr/lib/python3/dist-packages"
	type entry struct{ from, to string }
	var files []entry
	var sos []string
	var walk func(root, to string) error
	walk = func(root, to string) error {
		return filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() {
				if d.Name() == "__pycache__" || d.Name() == "tests" {
					return filepath.SkipDir
				}
				return nil
			}
			st, err := os.Stat(p)
			if err != nil {
				// A dangling link (the kernel's VERSION points at the
				// repository root, absent from a partial checkout).
				return nil
			}
			rel, _ := filepath.Rel(root, p)
			if st.IsDir() {
				// Debian links debugpy's vendored pydevd to its own
				// package: copy what the link points at.
				return walk(p+"/", filepath.Join(to, rel))
			}
			files = append(files, entry{p, filepath.Join(to, rel)})
			if strings.HasSuffix(p, ".so") {
				sos = append(sos, p)
			}
			return nil
		})
	}
	optional := append(append([]string(nil), olderRunnerPackages...), plotPackages...)
	for _, p := range append(append([]string(nil), distPackages...), optional...) {
		if _, err := os.Stat(filepath.Join(dist, p)); err != nil {
			continue // an optional one (the required ones were checked)
		}
		if err := walk(filepath.Join(dist, p), filepath.Join("usr/lib/python3/dist-packages", p)); err != nil {
			return "", err
		}
	}
	// Package metadata: jupyter_client finds its kernel provisioners
	// through entry points.
	metas, _ := filepath.Glob(filepath.Join(dist, "*.dist-info"))
	eggs, _ := filepath.Glob(filepath.Join(dist, "*.egg-info"))
	for _, m := range append(metas, eggs...) {
		if err := walk(m, filepath.Join("usr/lib/python3/dist-packages", filepath.Base(m))); err != nil {
			return "", err
		}
	}
	if _, err := os.Stat(filepath.Join(dist, "matplotlib")); err == nil {
		for _, p := range plotData {
			st, err := os.Stat(p)
			switch {
			case err != nil:
				continue
			case st.IsDir():
				err = walk(p+"/", strings.TrimPrefix(p, "/"))
			default:
				files = append(files, entry{p, strings.TrimPrefix(p, "/")})
			}
			if err != nil {
				return "", err
			}
		}
	}
	if kdir != "" {
		if err := walk(kdir, "opt/backend.ai-src/ai/backend/kernel"); err != nil {
			return "", err
		}
	}
	// The kernelspec ipykernel installs, pointing at /usr/bin/python3.
	files = append(files, entry{"/usr/share/jupyter/kernels/python3/kernel.json", "usr/share/jupyter/kernels/python3/kernel.json"})
	libs := map[string]bool{}
	for _, so := range sos {
		out, err := exec.Command("ldd", so).Output()
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(bytes.NewReader(out))
		for sc.Scan() {
			for _, f := range strings.Fields(sc.Text()) {
				if strings.HasPrefix(f, "/") {
					libs[f] = true
				}
			}
		}
	}
	for l := range libs {
		real, err := filepath.EvalSymlinks(l)
		if err != nil {
			return "", err
		}
		files = append(files, entry{real, strings.TrimPrefix(l, "/")})
	}
	sort.Slice(files, func(i, j int) bool { return files[i].to < files[j].to })

	h := sha256.New()
	fmt.Fprintln(h, base)
	for _, f := range files {
		st, err := os.Stat(f.from)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(h, "%s %s %d %d\n", f.from, f.to, st.Size(), st.ModTime().UnixNano())
	}
	ref := repo + ":" + hex.EncodeToString(h.Sum(nil))[:12]
	ctx := context.Background()
	if _, err := cli.ImageInspect(ctx, ref); err == nil {
		return ref, nil
	}

	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	add := func(name string, mode int64, data []byte) error {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: mode, Size: int64(len(data))}); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	dockerfile := fmt.Sprintf("FROM %s\nCOPY rootfs/ /\n", base)
	if err := add("Dockerfile", 0o644, []byte(dockerfile)); err != nil {
		return "", err
	}
	// The kernelspec and the runner's own children call python3.
	if err := tw.WriteHeader(&tar.Header{Name: "rootfs/usr/bin/python3", Typeflag: tar.TypeSymlink, Linkname: "python3.11", Mode: 0o777}); err != nil {
		return "", err
	}
	for _, f := range files {
		data, err := os.ReadFile(f.from)
		if err != nil {
			return "", err
		}
		st, _ := os.Stat(f.from)
		if err := add("rootfs/"+f.to, int64(st.Mode().Perm()), data); err != nil {
			return "", err
		}
	}
	if err := tw.Close(); err != nil {
		return "", err
	}
	return ref, dockerBuild(ctx, cli, ref, &buf)
}

// dockerBuild builds the context in buf (a tar holding a Dockerfile) as
// ref, failing with the build's own error record.
func dockerBuild(ctx context.Context, cli *client.Client, ref string, buf *bytes.Buffer) error {
	res, err := cli.ImageBuild(ctx, buf, client.ImageBuildOptions{Tags: []string{ref}, Remove: true, ForceRemove: true})
	if err != nil {
		return err
	}
	defer res.Body.Close()
	// The build's progress stream ends with an error record on failure.
	dec := json.NewDecoder(res.Body)
	var last []string
	for {
		var m struct {
			Stream string `json:"stream"`
			Error  string `json:"error"`
		}
		if err := dec.Decode(&m); err == io.EOF {
			break
		} else if err != nil {
			return err
		}
		if m.Error != "" {
			return fmt.Errorf("docker build: %s (%s)", m.Error, strings.Join(last, ""))
		}
		if m.Stream != "" {
			last = append(last, m.Stream)
			if len(last) > 5 {
				last = last[1:]
			}
		}
	}
	if _, err := cli.ImageInspect(ctx, ref); err != nil {
		return fmt.Errorf("docker build left no %s: %v", ref, err)
	}
	return nil
}
