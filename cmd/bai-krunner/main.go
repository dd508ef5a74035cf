// Command bai-krunner is the in-container kernel runner: bind-mounted
// read-only into every kernel at /opt/kernel/bai-krunner and used as its
// entrypoint. It is a static binary (CGO_ENABLED=0) and needs nothing from
// the image.
//
//	bai-krunner entrypoint RUNTIME [RUNTIME_PATH]   as root: set up the user, run bootstrap.sh, drop privileges, exec run
//	bai-krunner run RUNTIME [RUNTIME_PATH]          serve the agent on ports 2000/2001
//	bai-krunner ssh [ARGS]  (or invoked as ssh)     a small OpenSSH-compatible client
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/bai-agent/bai-agent/internal/krunner"
)

const self = "/opt/kernel/bai-krunner"

func main() {
	// Installed as ssh in images without one (see installSSH).
	if filepath.Base(os.Args[0]) == "ssh" {
		os.Exit(krunner.SSHMain(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
	}
	if len(os.Args) >= 2 && os.Args[1] == "ssh" {
		os.Exit(krunner.SSHMain(os.Args[2:], os.Stdin, os.Stdout, os.Stderr))
	}
	// probe: the agent's start-up check of a sandbox runtime runs this in
	// a container of that runtime (internal/sandbox).
	if len(os.Args) == 2 && os.Args[1] == "probe" {
		fmt.Println("ok")
		os.Exit(0)
	}
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: bai-krunner entrypoint|run RUNTIME [RUNTIME_PATH]")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "entrypoint":
		entrypoint(os.Args[2:])
	case "run":
		os.Exit(run(os.Args[2:]))
	default:
		fmt.Fprintf(os.Stderr, "bai-krunner: unknown command %q\n", os.Args[1])
		os.Exit(2)
	}
}

func logger(runtime string) *slog.Logger {
	start := time.Now()
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
		if a.Key == slog.TimeKey && len(groups) == 0 {
			return slog.String("t", fmt.Sprintf("+%.3f", time.Since(start).Seconds()))
		}
		return a
	}})).With("runner", runtime+"-kernel")
}

// entrypoint prepares the kernel user as root and becomes it. A failed
// step is logged and start-up goes on: a kernel under the wrong user is
// better than one that never answers the agent.
func entrypoint(args []string) {
	log := logger(args[0])
	id, err := krunner.ParseIdentity(os.Getenv)
	if err != nil {
		log.Error("identity", "error", err)
	}
	fmt.Printf("Kernel runner: uid %d, gid %d\n", id.UID, id.GID)
	groups := []int{id.GID}
	if os.Geteuid() != 0 {
		log.Warn("the image runs as a non-root user; running as it", "uid", os.Geteuid())
	} else if id.UID != 0 {
		extra, err := krunner.SetupUser("/", id)
		if err != nil {
			log.Error("setting up the work user", "error", err)
		}
		groups = append(groups, extra...)
		for _, p := range []string{"/home/work"} {
			_ = os.Chown(p, id.UID, id.GID)
		}
		if os.Getenv("SUDO_SESSION_ENABLED") == "1" {
			if err := krunner.GrantSudo("/"); err != nil {
				log.Warn("sudo for the work user not set up", "error", err)
			}
		}
	}
	// The container's environment is the image's and the request's: it
	// applies to the kernel's processes, after the runner became the
	// kernel user (the exec of run below). What runs as root here gets
	// krunner.RootEnv instead (a fixed PATH, no loader or shell hooks), so
	// that a PATH, LD_LIBRARY_PATH, BASH_ENV or PYTHONPATH from the
	// request cannot choose a program that runs as root and reads the
	// runner secret.
	env := os.Environ()
	if os.Geteuid() == 0 {
		installSSH(log, os.Getenv("PATH"))
		if st, err := os.Stat("/opt/container/bootstrap.sh"); err == nil {
			if st.Mode()&0o111 == 0 {
				log.Warn("/opt/container/bootstrap.sh is not executable; skipped")
			} else if _, err := os.Stat("/bin/sh"); err == nil {
				// What the image's bootstrap exports is merged into the
				// kernel's environment.
				rootEnv := krunner.RootEnv(env, krunner.SafeRootDir)
				c := exec.Command("/bin/sh", "-c", ". /opt/container/bootstrap.sh; env -0")
				c.Env, c.Dir, c.Stderr = rootEnv, "/", os.Stderr
				if out, err := c.Output(); err == nil {
					var after []string
					for _, kv := range strings.Split(string(out), "\x00") {
						if kv != "" {
							after = append(after, kv)
						}
					}
					env = krunner.MergeBootstrapEnv(env, rootEnv, after)
				} else {
					log.Error("image bootstrap failed", "error", err)
				}
			}
		}
	}
	env = setEnv(env, "HOME", "/home/work")
	// The runner secret (CURVE keys, terminal token) is readable by root
	// only: read it before dropping privileges and hand it over through
	// a pipe, so the kernel user cannot read it from /home/config.
	cfgDir := os.Getenv("BAI_KRUNNER_CONFIGDIR")
	if cfgDir == "" {
		cfgDir = "/home/config"
	}
	secret, err := krunner.ReadAuthFile(cfgDir)
	if err != nil {
		// run reads it again and refuses to serve without it.
		log.Error("runner secret", "error", err)
	}
	if env, err = krunner.PassAuth(secret, env); err != nil {
		log.Error("runner secret", "error", err)
	}
	if os.Geteuid() == 0 && id.UID != 0 {
		// Dropping root either works completely or the kernel does not
		// start: user code must never run as root, or with root's groups,
		// because a call failed (an id the kernel refuses).
		fail := func(what string, err error) {
			log.Error("could not become the kernel user; stopping rather than run user code as root", "step", what, "uid", id.UID, "gid", id.GID, "error", err)
			os.Exit(1)
		}
		if err := syscall.Setgroups(groups); err != nil {
			fail("setgroups", err)
		}
		if err := syscall.Setgid(id.GID); err != nil {
			fail("setgid", err)
		}
		if err := syscall.Setuid(id.UID); err != nil {
			fail("setuid", err)
		}
		if os.Getuid() != id.UID || os.Geteuid() != id.UID || os.Getgid() != id.GID || os.Getegid() != id.GID {
			fail("verify", fmt.Errorf("running as %d:%d", os.Geteuid(), os.Getegid()))
		}
	}
	bin := self
	if _, err := os.Stat(bin); err != nil {
		bin, _ = os.Executable()
	}
	_ = os.Chdir("/home/work")
	if err := syscall.Exec(bin, append([]string{bin, "run"}, args...), env); err != nil {
		log.Error("exec run", "error", err)
		os.Exit(1)
	}
}

// installSSH links the runner's built-in client as ssh when the image
// has none on the kernel's PATH nor on RootPATH, as upstream links
// dropbear's scp: cluster sessions and MPI launchers need "ssh host
// command" in every image. It runs as root, so the link goes only into a
// directory of RootPATH (the image's own), never into one the request's
// PATH names: the first of them on the kernel's PATH, else the first that
// takes it (busybox images have only /bin).
func installSSH(log *slog.Logger, kernelPATH string) {
	if krunner.HasProgram("ssh", kernelPATH) || krunner.HasProgram("ssh", krunner.RootPATH) {
		return
	}
	system := filepath.SplitList(krunner.RootPATH)
	var dirs []string
	for _, d := range filepath.SplitList(kernelPATH) {
		if slices.Contains(system, filepath.Clean(d)) && !slices.Contains(dirs, filepath.Clean(d)) {
			dirs = append(dirs, filepath.Clean(d))
		}
	}
	for _, d := range system {
		if !slices.Contains(dirs, d) {
			dirs = append(dirs, d)
		}
	}
	var last error
	for _, dir := range dirs {
		if st, err := os.Stat(dir); err != nil || !st.IsDir() {
			continue
		}
		if last = os.Symlink(self, filepath.Join(dir, "ssh")); last == nil {
			return
		}
	}
	log.Warn("no ssh client installed: no writable system directory", "path", krunner.RootPATH, "error", last)
}

func setEnv(env []string, k, v string) []string {
	for i, kv := range env {
		if strings.HasPrefix(kv, k+"=") {
			env[i] = k + "=" + v
			return env
		}
	}
	return append(env, k+"="+v)
}

func run(args []string) int {
	o := krunner.Options{Runtime: args[0], Log: logger(args[0])}
	if len(args) > 1 {
		o.RuntimePath = args[1]
	}
	if v := os.Getenv("BAI_KRUNNER_WORKDIR"); v != "" {
		o.WorkDir = v
	}
	if v := os.Getenv("BAI_KRUNNER_CONFIGDIR"); v != "" {
		o.ConfigDir = v
	}
	cfgDir := o.ConfigDir
	if cfgDir == "" {
		cfgDir = "/home/config"
	}
	// A host-network kernel binds the host ports the agent chose.
	ip, err := krunner.IntrinsicPorts(cfgDir)
	if err != nil {
		o.Log.Error("intrinsic ports; using the defaults", "error", err)
	}
	o.InPort, o.OutPort = ip["replin"], ip["replout"]
	// Only a host-network kernel has intrinsic ports; one we cannot read
	// is treated as one.
	o.HostNetwork = err != nil || len(ip) > 0
	if p := ip["sshd"]; p != 0 {
		o.SSHPorts = []int{p}
	}
	if p := ip["ttyd"]; p != 0 {
		o.TermPorts = []int{p}
	}
	auth, err := krunner.LoadAuth(cfgDir)
	if err != nil {
		o.Log.Error("runner secret; not serving", "error", err)
		return 1
	}
	if auth != nil {
		if o.Curve, err = auth.Curve(); err != nil {
			o.Log.Error("runner secret; not serving", "error", err)
			return 1
		}
		o.TermToken = auth.TermToken
	}
	r, err := krunner.New(o)
	if err != nil {
		o.Log.Error("start", "error", err)
		return 1
	}
	// The user's own bootstrap.sh, as upstream runs it before serving.
	if _, err := os.Stat("/home/work/bootstrap.sh"); err == nil {
		if _, err := os.Stat("/bin/sh"); err == nil {
			c := exec.Command("/bin/sh", "/home/work/bootstrap.sh")
			c.Dir, c.Stdout, c.Stderr = "/home/work", os.Stdout, os.Stderr
			if err := c.Run(); err != nil {
				o.Log.Warn("user bootstrap.sh failed", "error", err)
			}
		}
	}
	// A stop signal ends the runner with 128+signal, as a shell reports a
	// process a signal ended: the agent tells a kernel stopped from
	// outside (an engine shutting down, docker stop) from one whose
	// runner exited by itself.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	var got atomic.Int32
	go func() {
		if s, ok := (<-sigs).(syscall.Signal); ok {
			got.Store(int32(s))
		}
		cancel()
	}()
	o.Log.Info("serving", "runtime", o.Runtime)
	if err := r.Serve(ctx); err != nil && ctx.Err() == nil {
		o.Log.Error("serve", "error", err)
		return 1
	}
	if s := got.Load(); s != 0 {
		return 128 + int(s)
	}
	return 0
}
