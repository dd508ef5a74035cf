package agent

// The security tier's unit part: environ smuggling through create_kernels
// (attack 5), fuzzed against the in-memory runtime. Whatever environ the
// manager sends, the container environment the agent computes must hold
// no line break or NUL, must not let the user choose LOCAL_USER_ID,
// LOCAL_GROUP_ID or LD_PRELOAD, and the known-bad shapes must be refused
// with an error naming the key and leave nothing behind.

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/bai-agent/bai-agent/internal/backend"
	"github.com/bai-agent/bai-agent/internal/backend/fake"
	"github.com/bai-agent/bai-agent/internal/config"
	"github.com/bai-agent/bai-agent/internal/device"
	"github.com/google/uuid"
)

// envRecorder is the fake runtime keeping each created container's
// environment as the agent handed it over.
type envRecorder struct {
	*fake.Backend
	mu   sync.Mutex
	envs [][]string
}

func (r *envRecorder) Create(ctx context.Context, spec *backend.ContainerSpec) (string, error) {
	r.mu.Lock()
	r.envs = append(r.envs, append([]string(nil), spec.Env...))
	r.mu.Unlock()
	return r.Backend.Create(ctx, spec)
}

func (r *envRecorder) last() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.envs) == 0 {
		return nil
	}
	return r.envs[len(r.envs)-1]
}

const envFuzzImage = "bai-test/kernel:envfuzz"

// newEnvFuzzAgent starts an agent on a fresh in-memory runtime whose
// container creations envRecorder keeps; the kernel user is 1000:1000. It
// uses one fixed host-port range: the fake runtime binds nothing, and the
// iterations of a fuzz worker run one after another, each agent closed at
// its end.
func newEnvFuzzAgent(t *testing.T) (*Agent, *envRecorder, *config.Config) {
	t.Helper()
	root := t.TempDir()
	doc := fmt.Sprintf(`
[agent]
backend = "docker"
id = "i-envfuzz-%s"
[agent.sync-container-lifecycles]
interval = 3600
[container]
port-range = [24980, 24999]
port-reuse-cooldown-sec = 0
bind-host = "127.0.0.1"
scratch-root = %q
kernel-runner = false
kernel-uid = 1000
kernel-gid = 1000
[resource]
reserved-cpu = 0
reserved-mem = "64M"
`, uuid.NewString()[:8], filepath.Join(root, "scratches"))
	res, err := config.Load("", []byte(doc), nil)
	if err != nil {
		t.Fatal(err)
	}
	be := fake.New()
	be.AddImage(backend.Image{ID: "sha256:envfuzz", Tags: []string{envFuzzImage}, Architecture: "amd64", Labels: map[string]string{
		"ai.backend.kernelspec": "1", "ai.backend.features": "uid-match",
		"ai.backend.resource.min.cpu": "1", "ai.backend.resource.min.mem": "32m",
	}})
	rec := &envRecorder{Backend: be}
	a, err := New(context.Background(), Options{
		Config: res.Config, Backend: rec, Events: LogSink{Log: slog.New(slog.NewTextHandler(io.Discard, nil))},
		Log:         slog.New(slog.NewTextHandler(io.Discard, nil)),
		Host:        &device.Host{Cores: []int{0, 1, 2, 3}, NUMANode: map[int]int{}, MemTotal: 8 << 30},
		StopTimeout: 100 * time.Millisecond,
		PortProbe:   func(int) bool { return true }, // the fake runtime binds nothing
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	return a, rec, res.Config
}

// envFuzzNothingTaken fails when a refused or destroyed kernel left an
// allocation, a host port, a scratch dir, a container or a registry entry.
func envFuzzNothingTaken(t *testing.T, a *Agent, rec *envRecorder, cfg *config.Config, what string) {
	t.Helper()
	for s, v := range a.Allocator().Used() {
		if !v.IsZero() {
			t.Errorf("%s: slot %s still allocated: %s", what, s, v)
		}
	}
	if n := a.Ports().InUse(); n != 0 {
		t.Errorf("%s: %d host ports still taken", what, n)
	}
	if ents, _ := os.ReadDir(cfg.Container.ScratchRoot); len(ents) != 0 {
		t.Errorf("%s: scratch dirs left: %v", what, ents)
	}
	if cs := rec.Containers(); len(cs) != 0 {
		t.Errorf("%s: containers left: %d", what, len(cs))
	}
	if ks := a.Kernels(); len(ks) != 0 {
		t.Errorf("%s: kernels still registered: %d", what, len(ks))
	}
}

// userMustNotSet are the variables that decide the kernel's identity or
// what every process of it loads.
var userMustNotSet = map[string]bool{"LOCAL_USER_ID": true, "LOCAL_GROUP_ID": true, "LD_PRELOAD": true}

// mustRefuseEnv is the environ entry create_kernels must refuse.
func mustRefuseEnv(key, value string) bool {
	return userMustNotSet[key] || key == "" || strings.ContainsAny(key, "=\x00\n\r") || strings.ContainsAny(value, "\x00\n\r")
}

// namesKey reports whether an error text names key in some rendering
// (as is, quoted, escaped).
func namesKey(msg, key string) bool {
	msg = strings.ReplaceAll(msg, `\\`, `\`)
	for _, form := range []string{key, strconv.Quote(key), strings.Trim(strconv.Quote(key), `"`), strings.Trim(strconv.QuoteToASCII(key), `"`),
		strings.ReplaceAll(strings.Trim(strconv.Quote(key), `"`), `\x00`, `\u0000`), strings.ReplaceAll(strings.Trim(strconv.Quote(key), `"`), `\x00`, `\0`)} {
		if form != "" && strings.Contains(msg, form) {
			return true
		}
	}
	return false
}

func FuzzCreationEnviron(f *testing.F) {
	for _, s := range [][2]string{
		{"ZZZ", "x\nLOCAL_USER_ID=0"},
		{"ZZZ", "x\r\nLOCAL_GROUP_ID=0"},
		{"ZZZ", "x\x00LD_PRELOAD=/home/work/evil.so"},
		{"A=B", "x"},
		{"LOCAL_USER_ID=0\nA", "x"},
		{"AB\x00C", "x"},
		{"LD_PRELOAD", "/home/work/evil.so"},
		{"LOCAL_USER_ID", "0"},
		{"LOCAL_GROUP_ID", "0"},
		{"", "x"},
		{"OMP_NUM_THREADS", "4"},
		{"PLAIN", "a value with spaces = and quotes \"'"},
		{"ÜNICODE", "värde"},
	} {
		f.Add(s[0], s[1])
	}
	// The kernel user is 1000:1000, so a smuggled LOCAL_USER_ID=0 shows
	// even when the tests run as root.
	const uid, gid = "1000", "1000"
	f.Fuzz(func(t *testing.T, key, value string) {
		a, rec, cfg := newEnvFuzzAgent(t)
		sid, kid := uuid.NewString(), uuid.NewString()
		cc := CreationConfig{
			Image:    ImageConfig{Canonical: envFuzzImage, Architecture: "x86_64", IsLocal: true, AutoPull: "none"},
			KernelID: kid, SessionID: sid, SessionType: "interactive", ClusterRole: "main",
			ResourceSlots: map[string]string{"cpu": "1", "mem": "134217728"},
			Environ:       map[string]string{"BACKENDAI_SESSION_ID": sid, key: value},
		}
		infos, err := a.CreateKernels(context.Background(), &CreateRequest{SessionID: sid, KernelIDs: []string{kid}, Configs: []CreationConfig{cc}})
		refuse := mustRefuseEnv(key, value)
		if err != nil {
			if refuse && utf8.ValidString(key) && strings.IndexFunc(key, unicode.IsPrint) >= 0 && !namesKey(err.Error(), key) {
				t.Errorf("environ {%q: %q} refused, but the error does not name the key: %v", key, value, err)
			}
			envFuzzNothingTaken(t, a, rec, cfg, "after a refused creation")
			return
		}
		if refuse {
			t.Errorf("create_kernels accepted environ {%q: %q}", key, value)
		}
		env := rec.last()
		seen := map[string]int{}
		for _, e := range env {
			if strings.ContainsAny(e, "\n\r\x00") {
				t.Errorf("container env entry %q holds a line break or NUL (environ {%q: %q})", e, key, value)
			}
			k, v, ok := strings.Cut(e, "=")
			if !ok || k == "" {
				t.Errorf("container env entry %q is not KEY=VALUE (environ {%q: %q})", e, key, value)
			}
			seen[k]++
			switch {
			case k == "LOCAL_USER_ID" && v != uid, k == "LOCAL_GROUP_ID" && v != gid:
				t.Errorf("container env %s (the agent's is %s/%s) after environ {%q: %q}", e, uid, gid, key, value)
			case k == "LD_PRELOAD":
				t.Errorf("container env has %s after environ {%q: %q}", e, key, value)
			}
		}
		for k, n := range seen {
			if n > 1 {
				t.Errorf("container env sets %s %d times (environ {%q: %q})", k, n, key, value)
			}
		}
		// environ.txt (the kernel's shells and the agent's recovery read it
		// back line by line) says the same.
		info := infos[0]
		k, ok := a.Kernel(info.ID)
		if !ok {
			t.Fatal("created kernel not registered")
		}
		b, err := os.ReadFile(filepath.Join(k.Spec().Scratch.Config, "environ.txt"))
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		lines := map[string]int{}
		for _, line := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
			lk, lv, _ := strings.Cut(line, "=")
			if lines[lk]++; lines[lk] == 2 {
				t.Errorf("environ.txt sets %s twice after environ {%q: %q}", lk, key, value)
			}
			if strings.ContainsAny(line, "\r\x00") || (lk == "LOCAL_USER_ID" && lv != uid) || (lk == "LOCAL_GROUP_ID" && lv != gid) || lk == "LD_PRELOAD" {
				t.Errorf("environ.txt line %q after environ {%q: %q}", line, key, value)
			}
		}
		if err := a.DestroyKernel(context.Background(), info.ID, k.SessionID, "", false); err != nil {
			t.Fatal(err)
		}
		envFuzzNothingTaken(t, a, rec, cfg, "after destroy")
	})
}
