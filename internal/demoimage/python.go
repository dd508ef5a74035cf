package demoimage

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"

	"github.com/moby/moby/client"
)

// Host paths the image is made of.
const (
	Python  = "/usr/bin/python3.11"
	PyLib   = "/usr/lib/python3.11"
	Busybox = "/bin/busybox"
)

// Labels are the image's Backend.AI labels.
var Labels = map[string]string{
	"ai.backend.kernelspec": "1", "ai.backend.features": "uid-match", "ai.backend.runtime-type": "python",
	"ai.backend.runtime-path": Python, "ai.backend.resource.min.cpu": "1", "ai.backend.resource.min.mem": "64m",
	"ai.backend.base-distro": "debian",
	// A file server over /home/work, defined in service-defs below.
	"ai.backend.service-ports": "http-server:http:8070",
}

// serviceDefs are the image's /etc/backend.ai/service-defs.
var serviceDefs = map[string]string{
	"http-server.json": `{"command": ["{runtime_path}", "-m", "http.server", "--directory", "/home/work", "{ports[0]}"], "url_template": "http://{host}:{port}/"}`,
}

// skipDirs are left out of the standard library.
var skipDirs = map[string]bool{"test": true, "__pycache__": true, "dist-packages": true, "site-packages": true, "idlelib": true,
	"tkinter": true, "ensurepip": true, "lib2to3": true, "turtledemo": true, "pydoc_data": true}

type content struct {
	files, libs []string
	digest      string
}

func collect() (*content, error) {
	if _, err := os.Stat(Python); err != nil {
		return nil, fmt.Errorf("%s is missing (apt-get install python3.11-minimal)", Python)
	}
	if _, err := os.Stat(Busybox); err != nil {
		return nil, fmt.Errorf("%s is missing (apt-get install busybox-static)", Busybox)
	}
	c := &content{}
	var sos []string
	_ = filepath.WalkDir(PyLib, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if d.IsDir() && skipDirs[d.Name()] {
			return filepath.SkipDir
		}
		if !d.IsDir() {
			c.files = append(c.files, p)
			if strings.HasSuffix(p, ".so") {
				sos = append(sos, p)
			}
		}
		return nil
	})
	seen := map[string]bool{}
	for _, f := range append([]string{Python}, sos...) {
		out, err := exec.Command("ldd", f).Output()
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(out), "\n") {
			for _, field := range strings.Fields(line) {
				if strings.HasPrefix(field, "/") {
					seen[field] = true
				}
			}
		}
	}
	for p := range seen {
		c.libs = append(c.libs, p)
	}
	sort.Strings(c.libs)
	h := sha256.New()
	for _, f := range append(append([]string{Python, Busybox}, c.libs...), c.files...) {
		if st, err := os.Stat(f); err == nil {
			fmt.Fprintf(h, "%s %d %d\n", f, st.Size(), st.ModTime().Unix())
		}
	}
	// The image's own files count too: a new service definition is a new
	// image.
	keys := make([]string, 0, len(Labels))
	for k := range Labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(h, "label %s=%s\n", k, Labels[k])
	}
	for _, n := range []string{"http-server.json"} {
		fmt.Fprintf(h, "def %s %s\n", n, serviceDefs[n])
	}
	c.digest = hex.EncodeToString(h.Sum(nil))[:12]
	return c, nil
}

// ContentTag is a tag that changes when the host's Python does
// (bai-test/python:<hash>), for tests.
func ContentTag() (string, error) {
	c, err := collect()
	if err != nil {
		return "", err
	}
	return "bai-test/python:" + c.digest, nil
}

// Build imports the image under tag unless it exists; built says whether
// it had to.
func Build(ctx context.Context, cli *client.Client, tag string) (built bool, err error) {
	if _, err := cli.ImageInspect(ctx, tag); err == nil {
		return false, nil
	}
	c, err := collect()
	if err != nil {
		return false, err
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dirs := map[string]bool{}
	mkdirs := func(p string) {
		var parts []string
		for d := filepath.Dir(p); d != "/" && d != "."; d = filepath.Dir(d) {
			parts = append([]string{d}, parts...)
		}
		for _, d := range parts {
			if !dirs[d] {
				dirs[d] = true
				_ = tw.WriteHeader(&tar.Header{Name: strings.TrimPrefix(d, "/") + "/", Typeflag: tar.TypeDir, Mode: 0o755})
			}
		}
	}
	add := func(src, dst string) error {
		b, err := os.ReadFile(src)
		if err != nil {
			return err
		}
		st, err := os.Stat(src)
		if err != nil {
			return err
		}
		mkdirs(dst)
		if err := tw.WriteHeader(&tar.Header{Name: strings.TrimPrefix(dst, "/"), Typeflag: tar.TypeReg, Mode: int64(st.Mode().Perm()), Size: int64(len(b))}); err != nil {
			return err
		}
		_, err = tw.Write(b)
		return err
	}
	for _, d := range []string{"/home/work/x", "/home/config/x", "/proc/x", "/sys/x", "/dev/x", "/etc/x", "/opt/x"} {
		mkdirs(d)
	}
	_ = tw.WriteHeader(&tar.Header{Name: "tmp/", Typeflag: tar.TypeDir, Mode: 0o1777})
	if err := add(Python, Python); err != nil {
		return false, err
	}
	for _, l := range c.libs {
		real, err := filepath.EvalSymlinks(l)
		if err != nil {
			continue
		}
		if err := add(real, l); err != nil {
			return false, err
		}
	}
	for _, f := range c.files {
		if err := add(f, f); err != nil {
			return false, err
		}
	}
	if err := add(Busybox, "/bin/busybox"); err != nil {
		return false, err
	}
	for _, app := range []string{"sh", "ls", "cat", "echo", "sleep", "env", "id", "ps", "true", "false", "grep", "head", "wc"} {
		_ = tw.WriteHeader(&tar.Header{Name: "bin/" + app, Typeflag: tar.TypeSymlink, Linkname: "busybox", Mode: 0o777})
	}
	_ = tw.WriteHeader(&tar.Header{Name: "usr/bin/python3", Typeflag: tar.TypeSymlink, Linkname: "python3.11", Mode: 0o777})
	_ = tw.WriteHeader(&tar.Header{Name: "usr/bin/python", Typeflag: tar.TypeSymlink, Linkname: "python3.11", Mode: 0o777})
	files := map[string]string{"/etc/passwd": "root:x:0:0:root:/root:/bin/sh\n", "/etc/group": "root:x:0:\n"}
	for n, body := range serviceDefs {
		files["/etc/backend.ai/service-defs/"+n] = body
	}
	for name, body := range files {
		mkdirs(name)
		_ = tw.WriteHeader(&tar.Header{Name: strings.TrimPrefix(name, "/"), Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(body))})
		_, _ = tw.Write([]byte(body))
	}
	if err := tw.Close(); err != nil {
		return false, err
	}
	changes := []string{`CMD ["/bin/sh"]`, "ENV PATH=/usr/bin:/bin", "ENV LANG=C.UTF-8"}
	keys := make([]string, 0, len(Labels))
	for k := range Labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		changes = append(changes, fmt.Sprintf("LABEL %s=%q", k, Labels[k]))
	}
	res, err := cli.ImageImport(ctx, client.ImageImportSource{Source: &buf, SourceName: "-"}, tag, client.ImageImportOptions{Changes: changes})
	if err != nil {
		return false, fmt.Errorf("docker import: %w", err)
	}
	_, _ = io.Copy(io.Discard, res)
	res.Close()
	if _, err := cli.ImageInspect(ctx, tag); err != nil {
		return false, fmt.Errorf("imported image %s not found: %w", tag, err)
	}
	return true, nil
}
