package agent

// The kernel-runner RPCs on the fake runtime. No runner answers here (a
// runner would need the kernel's REPL host ports): the tests cover what
// the agent does without a runner connection, with a connection whose
// runner never answers (the runner's own timeouts and the callers'
// deadlines), and a creation and a restart whose runner never comes up.

import (
	"bytes"
	"context"
	"debug/elf"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	zmq "github.com/pebbe/zmq4"

	"github.com/bai-agent/bai-agent/internal/backend/fake"
	"github.com/bai-agent/bai-agent/internal/coderunner"
	"github.com/bai-agent/bai-agent/internal/config"
	"github.com/bai-agent/bai-agent/internal/kernel"
	"github.com/bai-agent/bai-agent/internal/testutil"
)

// unitStaticELF writes the smallest file ResolveKrunner accepts: an ELF
// executable with one loadable segment, no interpreter and no shared
// libraries. It is never run (the fake runtime runs nothing).
func unitStaticELF(t *testing.T) string {
	t.Helper()
	var buf bytes.Buffer
	hdr := elf.Header64{
		Type: uint16(elf.ET_EXEC), Machine: uint16(elf.EM_X86_64), Version: uint32(elf.EV_CURRENT),
		Entry: 0x400078, Phoff: 64, Ehsize: 64, Phentsize: 56, Phnum: 1,
	}
	copy(hdr.Ident[:], elf.ELFMAG)
	hdr.Ident[elf.EI_CLASS] = byte(elf.ELFCLASS64)
	hdr.Ident[elf.EI_DATA] = byte(elf.ELFDATA2LSB)
	hdr.Ident[elf.EI_VERSION] = byte(elf.EV_CURRENT)
	prog := elf.Prog64{Type: uint32(elf.PT_LOAD), Flags: uint32(elf.PF_R | elf.PF_X), Vaddr: 0x400000, Paddr: 0x400000, Filesz: 128, Memsz: 128, Align: 0x1000}
	for _, v := range []any{hdr, prog} {
		if err := binary.Write(&buf, binary.LittleEndian, v); err != nil {
			t.Fatal(err)
		}
	}
	buf.Write(make([]byte, 128-buf.Len()))
	p := filepath.Join(t.TempDir(), "bai-krunner")
	if err := os.WriteFile(p, buf.Bytes(), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestResolveKrunnerStatic_Fake(t *testing.T) {
	t.Parallel()
	bin := unitStaticELF(t)
	got, err := ResolveKrunner(bin, func(string) string { return "" })
	if err != nil || got != bin {
		t.Fatalf("a static binary: %q %v", got, err)
	}
	// Through $BAI_KRUNNER_BINARY.
	got, err = ResolveKrunner("", func(k string) string {
		if k == "BAI_KRUNNER_BINARY" {
			return bin
		}
		return ""
	})
	if err != nil || got != bin {
		t.Fatalf("from the environment: %q %v", got, err)
	}
	// Nothing configured: bai-krunner next to the executable (the test
	// binary's folder has none).
	if _, err := ResolveKrunner("", func(string) string { return "" }); !errors.Is(err, ErrRunnerMissing) || !strings.Contains(err.Error(), "bai-krunner") {
		t.Fatalf("next to the executable: %v", err)
	}
}

// New refuses to start with kernel-runner on and no usable runner.
func TestNewNeedsRunner_Fake(t *testing.T) {
	t.Parallel()
	c := newCore(t, nil, nil)
	o := c.opts
	cfg := *c.cfg
	cfg.Container.KernelRunner = true
	cfg.Container.KrunnerBinary = filepath.Join(t.TempDir(), "missing")
	o.Config = &cfg
	if _, err := New(context.Background(), o); !errors.Is(err, ErrRunnerMissing) {
		t.Fatalf("New without a runner binary: %v", err)
	}
}

// Without a runner connection (kernel-runner = false) every runner RPC
// answers KernelRunnerNotInitialized; start_service refuses blocked
// kernels and unknown services first.
func TestRunnerRPCsWithoutRunner_Fake(t *testing.T) {
	t.Parallel()
	c := newCore(t, nil, nil)
	info, err := c.create(nil)
	if err != nil {
		t.Fatal(err)
	}
	blocked, err := c.create(func(r *CreationConfig) { r.BlockServicePorts = true })
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	sid := "s-1"
	for _, tc := range []struct {
		name string
		call func(kid string) error
	}{
		{"execute", func(kid string) error {
			_, err := c.agent.Execute(ctx, sid, kid, coderunner.Request{Mode: "query", Code: "1"})
			return err
		}},
		{"interrupt", func(kid string) error { return c.agent.Interrupt(kid) }},
		{"complete", func(kid string) error { _, err := c.agent.Completions(ctx, kid, "pri", nil); return err }},
		{"ping", func(kid string) error { _, err := c.agent.PingKernel(ctx, kid); return err }},
		{"trigger_batch", func(kid string) error { return c.agent.TriggerBatch(ctx, sid, kid, "true", nil) }},
		{"start_service", func(kid string) error { _, err := c.agent.StartService(ctx, kid, "jupyter", nil); return err }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.call(info.ID); !errors.Is(err, ErrRunnerNotReady) || !strings.Contains(err.Error(), info.ID) {
				t.Errorf("running kernel without a runner: %v", err)
			}
			if err := tc.call("no-such-kernel"); !errors.Is(err, ErrKernelNotFound) {
				t.Errorf("unknown kernel: %v", err)
			}
		})
	}
	if c.events.has("execution_started") {
		t.Fatal("execution_started without a runner")
	}
	res, err := c.agent.StartService(ctx, info.ID, "no-such-service", nil)
	if err != nil || res["status"] != "failed" || res["error"] != "invalid service name" {
		t.Fatalf("unknown service: %v %v", res, err)
	}
	res, err = c.agent.StartService(ctx, blocked.ID, "jupyter", nil)
	if err != nil || res["status"] != "failed" || res["error"] != "operation blocked" {
		t.Fatalf("blocked kernel: %v %v", res, err)
	}
	c.agent.ShutdownService(info.ID, "jupyter") // nothing to tell: no runner
	c.agent.ShutdownService("no-such-kernel", "jupyter")
	if !c.agent.IsRunning(info.ID) {
		t.Fatal("the kernel went away")
	}
}

// runnerConfig turns the kernel runner on with a short handshake.
func runnerConfig(bin string) func(*config.Config) {
	return func(cfg *config.Config) {
		cfg.Container.KernelRunner = true
		cfg.Container.KrunnerBinary = bin
		cfg.KernelLifecycles.InitPollingAttempt = 2
		cfg.KernelLifecycles.InitPollingTimeoutSec = 1
		cfg.KernelLifecycles.InitTimeoutSec = 0.2
	}
}

// A runner that never answers fails the creation at its runner step,
// after the runner binary was mounted into the container; nothing is
// left.
func TestCreateRunnerNeverAnswers_Fake(t *testing.T) {
	t.Parallel()
	bin := unitStaticELF(t)
	var nb *unitNetBackend
	c := newCore(t, runnerConfig(bin), func(o *Options) {
		nb = newUnitNetBackend(o.Backend.(*fake.Backend))
		o.Backend = nb
	})
	t0 := time.Now()
	kid := uuid.NewString()
	_, err := c.agent.CreateKernels(context.Background(), fakeRequest(kid, nil))
	var se *StepError
	if !errors.As(err, &se) || se.Step != "runner" || !errors.Is(err, ErrCreationFailed) {
		t.Fatalf("error %v, want the runner step to fail", err)
	}
	if d := time.Since(t0); d > 10*time.Second {
		t.Fatalf("the handshake took %s", d)
	}
	nb.mu.Lock()
	var mounted bool
	for _, s := range nb.specs {
		for _, m := range s.Mounts {
			if m.Source == bin && m.Target == KrunnerPath && m.ReadOnly {
				mounted = true
			}
		}
	}
	nb.mu.Unlock()
	if !mounted {
		t.Fatal("the runner binary was not mounted read-only at " + KrunnerPath)
	}
	if ev, ok := c.events.find("kernel_terminated", kid); !ok || ev["reason"] != ReasonFailedToStart {
		t.Fatalf("kernel_terminated %v", ev)
	}
	c.assertNothingTaken("after the runner never answered")
}

// Kernels adopted by an agent with the runner on get a runner connection
// without a handshake. Their runner never answers: each RPC ends at its
// caller's deadline, start_service reports a timeout, a batch job times
// out with task-timeout, and a restart fails at the runner step.
func TestAdoptedRunnerNeverAnswers_Fake(t *testing.T) {
	if !zmq.HasCurve() {
		testutil.Missing(t, "libzmq with CURVE (the agent dials runners with it)")
	}
	t.Parallel()
	bin := unitStaticELF(t)
	c := newCore(t, nil, nil)
	info, err := c.create(nil)
	if err != nil {
		t.Fatal(err)
	}
	batch, err := c.create(func(r *CreationConfig) { r.SessionType = "batch" })
	if err != nil {
		t.Fatal(err)
	}
	c.agent.Close()
	runnerConfig(bin)(c.cfg)
	c.events = &recorder{}
	c.opts.Events = c.events
	c.agent = c.start()
	for _, id := range []string{info.ID, batch.ID} {
		if k, ok := c.agent.Kernel(id); !ok || k.State() != kernel.Running {
			t.Fatalf("kernel %s not adopted", id)
		}
	}
	short := func() (context.Context, context.CancelFunc) {
		return context.WithTimeout(context.Background(), 100*time.Millisecond)
	}
	ctx, cancel := short()
	if _, err := c.agent.PingKernel(ctx, info.ID); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("ping: %v", err)
	}
	cancel()
	ctx, cancel = short()
	if _, err := c.agent.Completions(ctx, info.ID, "pri", nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("complete: %v", err)
	}
	cancel()
	ctx, cancel = short()
	k, _ := c.agent.Kernel(info.ID)
	if _, err := c.agent.Execute(ctx, "", info.ID, coderunner.Request{Mode: "query", Code: "print(1)", APIVersion: 3}); !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), info.ID) {
		t.Errorf("execute: %v", err)
	}
	cancel()
	if ev := c.events.findSession("execution_started", k.SessionID); ev == nil {
		t.Error("no execution_started for the kernel's session")
	}
	if err := c.agent.Interrupt(info.ID); err != nil {
		t.Errorf("interrupt (queued for the runner): %v", err)
	}
	ctx, cancel = short()
	res, err := c.agent.StartService(ctx, info.ID, "jupyter", map[string]any{"x": 1})
	cancel()
	if err != nil || res["status"] != "failed" || res["error"] != "timeout" {
		t.Errorf("start_service: %v %v", res, err)
	}
	c.agent.ShutdownService(info.ID, "jupyter")
	c.agent.MarkOOM(info.ID)

	// A batch job whose runner never answers ends with task-timeout.
	timeout := 200 * time.Millisecond
	if err := c.agent.TriggerBatch(context.Background(), "batch-session", info.ID, "sleep 100", &timeout); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "session_failure", func() bool { return c.events.findSession("session_failure", "batch-session") != nil })
	ev := c.events.findSession("session_failure", "batch-session")
	if ev["reason"] != "task-timeout" || ev["exit_code"] != float64(-2) {
		t.Fatalf("session_failure %v", ev)
	}

	// A restart waits for the new container's runner, which never comes.
	_, err = c.agent.RestartKernel(context.Background(), k.SessionID, info.ID, nil)
	var se *StepError
	if !errors.As(err, &se) || se.Op != "restart" || se.Step != "runner" {
		t.Fatalf("restart: %v", err)
	}
	if _, ok := c.agent.Kernel(info.ID); ok {
		t.Fatal("a kernel whose restart failed is still registered")
	}
}
