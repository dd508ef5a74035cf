package krunner

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/bai-agent/bai-agent/internal/krunner/kauth"
)

// ReadAuthFile reads the kernel's runner secret from the config folder
// (as root, in the entrypoint). No file is (nil, nil): a kernel another
// agent made, served with the NULL mechanism as before.
func ReadAuthFile(cfgDir string) ([]byte, error) {
	f, err := os.OpenFile(filepath.Join(cfgDir, kauth.File), os.O_RDONLY|unix.O_NOFOLLOW, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("runner secret: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, kauth.MaxSize))
	if err != nil {
		return nil, fmt.Errorf("runner secret: %w", err)
	}
	return b, nil
}

// PassAuth hands the secret to the process the entrypoint execs next: a
// pipe's read end without close-on-exec, its number named by
// kauth.FDEnv in the returned environment. A pipe, not the environment,
// because every child of the runner (the user's code) inherits the
// environment.
func PassAuth(secret []byte, env []string) ([]string, error) {
	if secret == nil {
		// No secret: nothing in the image's environment may name one.
		return unsetEnvVar(env, kauth.FDEnv), nil
	}
	if len(secret) > 4096 {
		return env, errors.New("runner secret larger than a pipe buffer")
	}
	// Raw descriptors: an os.File would set close-on-exec and close the
	// read end in a finalizer.
	var p [2]int
	if err := unix.Pipe2(p[:], 0); err != nil {
		return env, fmt.Errorf("runner secret pipe: %w", err)
	}
	_, err := unix.Write(p[1], secret)
	unix.Close(p[1])
	if err != nil {
		unix.Close(p[0])
		return env, fmt.Errorf("runner secret pipe: %w", err)
	}
	return setEnvVar(env, kauth.FDEnv, strconv.Itoa(p[0])), nil
}

// LoadAuth is the run command's secret: from the descriptor the
// entrypoint passed, else straight from the config folder (a root
// kernel user, or a runner started by hand). It first makes the process
// non-dumpable, so the kernel user (the same uid) cannot read the secret
// out of the runner's memory or descriptors through /proc or ptrace. A
// secret file the runner cannot read is an error: serving NULL would
// open the REPL ports to anyone.
func LoadAuth(cfgDir string) (*kauth.Secrets, error) {
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		return nil, fmt.Errorf("prctl(PR_SET_DUMPABLE): %w", err)
	}
	var b []byte
	if v, ok := os.LookupEnv(kauth.FDEnv); ok {
		os.Unsetenv(kauth.FDEnv)
		fd, err := strconv.Atoi(v)
		if err != nil || fd < 3 {
			return nil, fmt.Errorf("%s=%q is not a descriptor", kauth.FDEnv, v)
		}
		f := os.NewFile(uintptr(fd), "runner-secret")
		b, err = io.ReadAll(io.LimitReader(f, kauth.MaxSize))
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("runner secret pipe: %w", err)
		}
	} else {
		var err error
		if b, err = ReadAuthFile(cfgDir); err != nil {
			return nil, err
		}
	}
	if b == nil {
		return nil, nil
	}
	return kauth.Parse(b)
}

func setEnvVar(env []string, k, v string) []string {
	return append(unsetEnvVar(env, k), k+"="+v)
}

func unsetEnvVar(env []string, k string) []string {
	out := make([]string, 0, len(env)+1)
	for _, kv := range env {
		if !strings.HasPrefix(kv, k+"=") {
			out = append(out, kv)
		}
	}
	return out
}
