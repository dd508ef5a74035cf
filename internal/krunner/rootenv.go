package krunner

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
)

// RootPATH is the search path of every command the entrypoint runs as
// root (the image's bootstrap.sh and what it runs).
const RootPATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// rootEnvNames are the variables of the container's environment that
// the entrypoint's root phase keeps, besides BACKENDAI_*: who the kernel
// user is and what the session has, which no shell, loader or
// interpreter reads. Everything else of the request (PATH, LD_*,
// BASH_ENV, ENV, IFS, SHELLOPTS, BASH_FUNC_*, PYTHON*, PERL5*, RUBY*,
// NODE_OPTIONS, GCONV_PATH, LOCPATH, NLSPATH, HOSTALIASES, RES_OPTIONS,
// TMPDIR, GLIBC_TUNABLES, OPENSSL_*, CUDA_INJECTION64_PATH, ...) can
// change which program runs or what it loads, and a list of those is
// never complete.
var rootEnvNames = map[string]bool{
	"LOCAL_USER_ID": true, "LOCAL_GROUP_ID": true, "ADDITIONAL_GIDS": true,
	"SUDO_SESSION_ENABLED": true, "HOSTNAME": true,
	"GPU_COUNT": true, "N_GPUS": true, "GPU_TYPE": true, "GPU_MODEL_NAME": true,
	"CUDA_VISIBLE_DEVICES": true, "NVIDIA_VISIBLE_DEVICES": true,
}

// rootEnvNamed are variables kept only with a plain value (a name, not a
// path: glibc takes a locale, time zone or terminal name with a slash as
// a file to read).
func rootEnvNamed(k string) bool {
	return k == "LANG" || k == "LANGUAGE" || k == "TERM" || k == "TZ" || strings.HasPrefix(k, "LC_")
}

func plainValue(v string) bool {
	for _, c := range v {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.ContainsRune("._-@+:,=", c):
		default:
			return false
		}
	}
	return true
}

// RootEnv is the environment of every command the entrypoint runs as
// root. env is the container's environment: the image's ENV and the
// request's, and an image committed from a session carries that session's
// request too, so no variable is trusted for where it came from. Only the
// allowlist above stays, HOME is /root, and PATH and LD_LIBRARY_PATH keep
// just their folders that safeDir accepts (root's own, nobody else can
// write them or their parents: an image's /opt/conda/bin stays, a
// /home/work/bin goes), PATH followed by RootPATH. The request's
// environment applies to the kernel's own processes, after the runner
// became the kernel user.
func RootEnv(env []string, safeDir func(string) bool) []string {
	m, _ := envMap(env)
	path := filterList(m["PATH"], safeDir)
	for _, d := range strings.Split(RootPATH, ":") {
		if !slices.Contains(path, d) {
			path = append(path, d)
		}
	}
	out := []string{"PATH=" + strings.Join(path, ":"), "HOME=/root"}
	if libs := filterList(m["LD_LIBRARY_PATH"], safeDir); len(libs) > 0 {
		out = append(out, "LD_LIBRARY_PATH="+strings.Join(libs, ":"))
	}
	for _, kv := range env {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			continue
		}
		if rootEnvNames[k] || strings.HasPrefix(k, "BACKENDAI_") || (rootEnvNamed(k) && plainValue(v)) {
			out = append(out, kv)
		}
	}
	return out
}

// filterList keeps the entries of a colon list that keep accepts.
func filterList(list string, keep func(string) bool) []string {
	var out []string
	for _, d := range strings.Split(list, ":") {
		if d != "" && keep(d) && !slices.Contains(out, d) {
			out = append(out, d)
		}
	}
	return out
}

// untrustedTrees are never searched as root, whoever owns them.
var untrustedTrees = []string{"/home", "/tmp", "/var/tmp", "/dev/shm", "/proc", "/run/user", "/opt/kernel"}

// SafeRootDir reports whether root may search dir for programs or
// libraries: an absolute, clean path outside the trees the kernel's users
// write, each component owned by root and writable by nobody else (a
// link counts as the folder it names, checked the same way), so that no
// one but root can put a program there or swap the folder.
func SafeRootDir(dir string) bool {
	return safeRootDir(dir, 0)
}

func safeRootDir(dir string, depth int) bool {
	if depth > 8 || !filepath.IsAbs(dir) || filepath.Clean(dir) != dir {
		return false
	}
	for _, t := range untrustedTrees {
		if dir == t || strings.HasPrefix(dir, t+"/") {
			return false
		}
	}
	p := "/"
	for _, c := range strings.Split(strings.TrimPrefix(dir, "/"), "/") {
		if !rootOnly(p) {
			return false
		}
		if c == "" {
			break
		}
		p = filepath.Join(p, c)
		st, err := os.Lstat(p)
		if err != nil {
			return false
		}
		if st.Mode()&os.ModeSymlink != 0 {
			if !ownedByRoot(st) {
				return false
			}
			target, err := filepath.EvalSymlinks(p)
			if err != nil || !safeRootDir(target, depth+1) {
				return false
			}
		}
	}
	return rootOnly(p)
}

// rootOnly: p is a folder owned by root that no one else can write.
func rootOnly(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.IsDir() && ownedByRoot(st) && st.Mode().Perm()&0o022 == 0
}

func ownedByRoot(fi os.FileInfo) bool {
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && st.Uid == 0
}

// envMap is env as a map (a later duplicate wins, as in exec) and its
// names in order.
func envMap(env []string) (map[string]string, []string) {
	m := map[string]string{}
	var order []string
	for _, kv := range env {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			continue
		}
		if _, seen := m[k]; !seen {
			order = append(order, k)
		}
		m[k] = v
	}
	return m, order
}

// bootstrapShellVars describe the bootstrap's shell, not what it exports.
var bootstrapShellVars = map[string]bool{"PWD": true, "OLDPWD": true, "SHLVL": true, "_": true}

// MergeBootstrapEnv is the kernel's environment after the image's
// bootstrap.sh: kernel (the container's environment) with what the
// bootstrap exported on top, where out is the environment the bootstrap
// ended with and root the one it started from (RootEnv(kernel)). A
// variable the bootstrap left as it found it keeps the kernel's value; one
// it set or changed takes the bootstrap's value; one it unset is removed.
// A variable the bootstrap saw with another value than the kernel's (PATH,
// or one withheld from the root phase) and extended, as in
// "export PATH=/opt/x/bin:$PATH", gets the kernel's value in place of the
// one the bootstrap saw.
func MergeBootstrapEnv(kernel, root, out []string) []string {
	km, order := envMap(kernel)
	rm, _ := envMap(root)
	om, oorder := envMap(out)
	for _, k := range oorder {
		v := om[k]
		if bootstrapShellVars[k] {
			continue
		}
		rv, inRoot := rm[k]
		if inRoot && rv == v {
			continue
		}
		if kv, inKernel := km[k]; inKernel && (!inRoot || rv != kv) {
			v = spliceList(v, rv, inRoot, kv)
		}
		if _, ok := km[k]; !ok {
			order = append(order, k)
		}
		km[k] = v
	}
	for k := range rm {
		if _, kept := om[k]; !kept && !bootstrapShellVars[k] {
			delete(km, k)
		}
	}
	env := make([]string, 0, len(order))
	for _, k := range order {
		if v, ok := km[k]; ok {
			env = append(env, k+"="+v)
		}
	}
	return env
}

// spliceList puts kernelV in v (a ':' list) where the bootstrap expanded
// the value it saw: the run of seen's elements (seen set), else the first
// empty element (seen unset, "$X" expanded to nothing). v is returned as
// it is when neither is there: the bootstrap replaced the value.
func spliceList(v, seen string, set bool, kernelV string) string {
	elems := strings.Split(v, ":")
	var repl []string
	if kernelV != "" {
		repl = strings.Split(kernelV, ":")
	}
	splice := func(i, n int) string {
		res := append(append(append([]string{}, elems[:i]...), repl...), elems[i+n:]...)
		return strings.Join(res, ":")
	}
	if set && seen != "" {
		want := strings.Split(seen, ":")
		for i := 0; i+len(want) <= len(elems); i++ {
			match := true
			for j := range want {
				if elems[i+j] != want[j] {
					match = false
					break
				}
			}
			if match {
				return splice(i, len(want))
			}
		}
		return v
	}
	for i, e := range elems {
		if e == "" {
			return splice(i, 1)
		}
	}
	return v
}

// HasProgram reports whether an executable regular file name is in one of
// the absolute directories of path (a lookup by stat only: nothing found
// there is run).
func HasProgram(name, path string) bool {
	for _, dir := range filepath.SplitList(path) {
		if !filepath.IsAbs(dir) {
			continue
		}
		if st, err := os.Stat(filepath.Join(dir, name)); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			return true
		}
	}
	return false
}
