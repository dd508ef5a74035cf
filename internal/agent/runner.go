package agent

import (
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/bai-agent/bai-agent/internal/coderunner"
	"github.com/bai-agent/bai-agent/internal/event"
	"github.com/bai-agent/bai-agent/internal/image"
	"github.com/bai-agent/bai-agent/internal/kernel"
)

// KrunnerPath is where the runner appears in every kernel.
const KrunnerPath = "/opt/kernel/bai-krunner"

// ErrRunnerMissing: the configured bai-krunner is absent or not a static
// binary (the agent refuses to start: kernels could not run code).
var ErrRunnerMissing = errors.New("kernel runner binary unusable")

// ErrRunnerNotReady is Backend.AI's KernelRunnerNotInitializedError: the
// kernel has no runner connection (kernel-runner = false, or it is being
// restarted).
var ErrRunnerNotReady = errors.New("kernel runner not initialized")

// ResolveKrunner finds the runner binary: [container] krunner-binary,
// $BAI_KRUNNER_BINARY, else bai-krunner next to the agent executable.
func ResolveKrunner(configured string, getenv func(string) string) (string, error) {
	p := configured
	if p == "" {
		p = getenv("BAI_KRUNNER_BINARY")
	}
	if p == "" {
		exe, err := os.Executable()
		if err != nil {
			return "", fmt.Errorf("%w: cannot locate the agent binary: %v", ErrRunnerMissing, err)
		}
		p = filepath.Join(filepath.Dir(exe), "bai-krunner")
	}
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", fmt.Errorf("%w: %s: %v", ErrRunnerMissing, p, err)
	}
	if err := checkStatic(abs); err != nil {
		return "", fmt.Errorf("%w: %s: %v (build it with `make build`, or set [container] krunner-binary; kernel-runner = false runs images' own commands)", ErrRunnerMissing, abs, err)
	}
	return abs, nil
}

// checkStatic accepts an ELF executable with no program interpreter and
// no shared libraries: it must run in any image.
func checkStatic(path string) error {
	f, err := elf.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return errors.New("dynamically linked (it has a program interpreter); build with CGO_ENABLED=0")
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		return fmt.Errorf("needs shared libraries %v", libs)
	}
	return nil
}

// runnerOps serves the calls that go through a kernel's runner: code
// execution, interrupts, completions, batch jobs, services and model
// services.
type runnerOps struct {
	reg    *registry
	events EventSink
	log    *slog.Logger
	// closed is closed when the agent shuts down; runCtx is its run
	// context; bg tracks the batch jobs and model services in flight.
	closed <-chan struct{}
	runCtx func() context.Context
	bg     *sync.WaitGroup
	// life ends with the agent (failModelService's destroys).
	life context.Context
	// owners tracks the goroutines that wait on kernel owners.
	owners *sync.WaitGroup
	// destroy is destroy_kernel (a model service that fails ends its
	// kernel).
	destroy func(ctx context.Context, kernelID, sessionID, reason string, suppressEvents bool) error
}

// handshake waits for the runner as the Python agent does after docker
// start: status, then get-apps, retried every 0.3 s up to
// init-polling-attempt times within init-polling-timeout-sec, each try
// bounded by init-timeout-sec. The apps' settings join the service ports.
func (a *Agent) handshake(ctx context.Context, k *Kernel, ks *KernelSpec, c *coderunner.Client) error {
	lc := a.cfg.KernelLifecycles
	deadline := time.Now().Add(seconds(lc.InitPollingTimeoutSec))
	attempts := lc.InitPollingAttempt
	if attempts < 1 {
		attempts = 1
	}
	var last error
	for i := 0; i < attempts && time.Now().Before(deadline); i++ {
		if i > 0 {
			select {
			case <-time.After(300 * time.Millisecond):
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		tctx, cancel := context.WithTimeout(ctx, seconds(lc.InitTimeoutSec))
		_, err := c.Status(tctx)
		if err == nil {
			actx, acancel := context.WithTimeout(tctx, 10*time.Second)
			var apps map[string]any
			apps, err = c.Apps(actx)
			acancel()
			if err == nil && apps["status"] != "done" {
				err = fmt.Errorf("get-apps: %v", apps)
			}
			if err == nil {
				cancel()
				mergeApps(ks, apps)
				return nil
			}
		}
		cancel()
		last = err
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
			// The init timeout is not retried (upstream raises
			// ContainerStartupTimeoutError).
			break
		}
	}
	return fmt.Errorf("%w: the kernel runner did not answer (%v)", ErrCreationFailed, last)
}

// mergeApps adds url_template, allowed_arguments and allowed_envs of the
// runner's service apps (its service definitions) to the matching
// service ports, for the creation result and kernel_started. ks is the
// spec being built (not published yet): it is written here.
func mergeApps(ks *KernelSpec, apps map[string]any) {
	data, _ := apps["data"].([]any)
	strs := func(v any) []string {
		var out []string
		l, _ := v.([]any)
		for _, x := range l {
			if s, ok := x.(string); ok {
				out = append(out, s)
			}
		}
		return out
	}
	for _, d := range data {
		app, _ := d.(map[string]any)
		name, _ := app["name"].(string)
		for i := range ks.Services {
			if ks.Services[i].Name != name {
				continue
			}
			if u, ok := app["url_template"].(string); ok {
				ks.Services[i].URLTemplate = u
			}
			ks.Services[i].AllowedArguments = strs(app["allowed_arguments"])
			ks.Services[i].AllowedEnvs = strs(app["allowed_envs"])
		}
	}
}

// StartService starts a service in a kernel (start_service): upstream's
// refusals first, then the runner's answer within 35 s.
func (ro *runnerOps) StartService(ctx context.Context, kernelID, name string, opts map[string]any) (map[string]any, error) {
	k, ok := ro.reg.get(kernelID)
	if !ok {
		return nil, fmt.Errorf("%w: %s", ErrKernelNotFound, kernelID)
	}
	ks := k.Spec()
	if ks == nil {
		return nil, fmt.Errorf("%w: kernel %s is %s", ErrRunnerNotReady, kernelID, k.State())
	}
	if ks.Config.BlockServicePorts {
		return map[string]any{"status": "failed", "error": "operation blocked"}, nil
	}
	var sp *image.ServicePort
	for i := range ks.Services {
		if ks.Services[i].Name == name {
			sp = &ks.Services[i]
		}
	}
	if sp == nil {
		return map[string]any{"status": "failed", "error": "invalid service name"}, nil
	}
	c := k.Runner()
	if c == nil {
		return nil, fmt.Errorf("%w: kernel %s has no runner connection", ErrRunnerNotReady, kernelID)
	}
	ctx, cancel := context.WithTimeout(ctx, 35*time.Second)
	defer cancel()
	port, ports := 0, sp.ContainerPorts
	if k.Network == "host" && (name == "sshd" || name == "ttyd") {
		// In the host's namespace the runner binds the host ports.
		ports = sp.HostPorts
	}
	if len(ports) > 0 {
		port = ports[0]
	}
	res, err := c.StartService(ctx, map[string]any{"name": name, "port": port, "ports": ports, "protocol": sp.Protocol, "options": opts})
	if errors.Is(err, context.DeadlineExceeded) {
		return map[string]any{"status": "failed", "error": "timeout"}, nil
	}
	return res, err
}

// ShutdownService stops a service (fire and forget, as upstream).
func (ro *runnerOps) ShutdownService(kernelID, name string) {
	if k, ok := ro.reg.get(kernelID); ok {
		if c := k.Runner(); c != nil {
			_ = c.ShutdownService(name)
		}
	}
}

// connectRunner dials the kernel's runner through its REPL host ports.
func (a *Agent) connectRunner(k *Kernel, ks *KernelSpec) (*coderunner.Client, error) {
	cv, err := runnerCurve(k.ID, ks)
	if err != nil {
		return nil, err
	}
	c, err := coderunner.DialCurve("127.0.0.1", ks.ReplIn, ks.ReplOut, cv, a.log.With("kernel_id", k.ID, "component", "code-runner"))
	if err != nil {
		return nil, err
	}
	k.setRunner(c)
	return c, nil
}

// runnerStep is the creation step after wait-ready: connect and wait for
// the runner's answer. Its undo closes the connection.
func (j *createJob) runner(ctx context.Context) error {
	if !j.a.cfg.Container.KernelRunner {
		return nil
	}
	c, err := j.a.connectRunner(j.k, j.ks)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrCreationFailed, err)
	}
	if err := j.a.handshake(ctx, j.k, j.ks, c); err != nil {
		j.k.setRunner(nil)
		c.Close()
		return err
	}
	return nil
}

func (j *createJob) closeRunner(context.Context) {
	if c := j.k.Runner(); c != nil {
		j.k.setRunner(nil)
		c.Close()
	}
}

// Runner returns the kernel's runner connection (nil when none).
func (k *Kernel) Runner() *coderunner.Client {
	k.runMu.Lock()
	defer k.runMu.Unlock()
	return k.runner
}

func (k *Kernel) setRunner(c *coderunner.Client) {
	k.runMu.Lock()
	k.runner = c
	k.runMu.Unlock()
}

func (ro *runnerOps) runnerOf(kernelID string) (*Kernel, *coderunner.Client, error) {
	k, ok := ro.reg.get(kernelID)
	if !ok {
		return nil, nil, fmt.Errorf("%w: %s", ErrKernelNotFound, kernelID)
	}
	c := k.Runner()
	if c == nil {
		return k, nil, fmt.Errorf("%w: kernel %s has no runner connection", ErrRunnerNotReady, kernelID)
	}
	return k, c, nil
}

// Execute runs code (or feeds input, or continues a run) in a kernel and
// returns the reference's result map; execution_started/finished go out
// around it.
func (ro *runnerOps) Execute(ctx context.Context, sessionID, kernelID string, req coderunner.Request) (map[string]any, error) {
	k, c, err := ro.runnerOf(kernelID)
	if err != nil {
		return nil, err
	}
	if sessionID == "" {
		sessionID = k.SessionID
	}
	ro.events.Publish(ctx, event.ExecutionStarted{Execution: event.Execution{SessionID: sessionID}})
	res, err := c.Execute(ctx, req)
	if err != nil {
		return nil, kernelErr(kernelID, err)
	}
	switch res["status"] {
	case "finished":
		ro.events.Publish(ctx, event.ExecutionFinished{Execution: event.Execution{SessionID: sessionID}})
	case "exec-timeout":
		ro.events.Publish(ctx, event.ExecutionTimeout{Execution: event.Execution{SessionID: sessionID}})
	}
	return res, nil
}

// Interrupt sends SIGINT to what runs in the kernel.
func (ro *runnerOps) Interrupt(kernelID string) error {
	_, c, err := ro.runnerOf(kernelID)
	if err != nil {
		return err
	}
	return c.Interrupt()
}

// Completions asks the kernel's runtime for completions.
func (ro *runnerOps) Completions(ctx context.Context, kernelID, text string, opts map[string]any) ([]any, error) {
	_, c, err := ro.runnerOf(kernelID)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return c.Complete(ctx, text, opts)
}

// PingKernel returns the runner's started_at.
func (ro *runnerOps) PingKernel(ctx context.Context, kernelID string) (float64, error) {
	_, c, err := ro.runnerOf(kernelID)
	if err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return c.Status(ctx)
}

// TriggerBatch starts the batch job of a batch session in the background
// and returns at once: session_success or session_failure follow with
// the reference's reasons and exit codes (task-finished 0, task-failed
// <code>, task-timeout -2).
func (ro *runnerOps) TriggerBatch(ctx context.Context, sessionID, kernelID, code string, timeout *time.Duration) error {
	if _, _, err := ro.runnerOf(kernelID); err != nil {
		return err
	}
	ro.bg.Add(1)
	go func() {
		defer ro.bg.Done()
		ro.runBatch(sessionID, kernelID, code, timeout, false)
	}()
	return nil
}

// resumeBatch follows an adopted batch kernel's job after an agent
// restart (the runner kept it running; its result is still to come).
func (ro *runnerOps) resumeBatch(k *Kernel) {
	if c := k.Runner(); c != nil {
		// Attach before the runner's queued output arrives.
		c.Preattach("batch-job")
	}
	ro.bg.Add(1)
	go func() {
		defer ro.bg.Done()
		ro.runBatch(k.SessionID, k.ID, "", nil, true)
	}()
}

func (ro *runnerOps) runBatch(sessionID, kernelID, code string, timeout *time.Duration, resume bool) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-ro.closed:
			cancel()
		case <-ctx.Done():
		}
	}()
	// The job's deadline is a context: its Done channel is closed, not
	// sent once, so every waiter sees it (a timer's single value could
	// be taken by a stale waiter and the timeout missed).
	jctx := ctx
	if timeout != nil {
		var jcancel context.CancelFunc
		jctx, jcancel = context.WithTimeout(ctx, *timeout)
		defer jcancel()
	}
	timedOut := func() bool { return jctx.Err() == context.DeadlineExceeded }
	flush := time.Second
	mode := "batch"
	if resume {
		mode = "continue"
	}
	result := func(ok bool, reason string, code int) {
		r := event.SessionResult{SessionID: sessionID, Reason: reason, ExitCode: code}
		if ok {
			ro.events.Publish(context.Background(), event.SessionSuccess{SessionResult: r})
		} else {
			ro.events.Publish(context.Background(), event.SessionFailure{SessionResult: r})
		}
	}
	for {
		if timedOut() {
			result(false, "task-timeout", -2)
			return
		}
		select {
		case <-ro.closed:
			return // the restarted agent re-attaches (recovery)
		default:
		}
		k, c, err := ro.runnerOf(kernelID)
		if err != nil {
			if k == nil {
				// The kernel is gone; its cleanup published
				// kernel_terminated.
				return
			}
			time.Sleep(time.Second)
			continue
		}
		res, err := c.Execute(jctx, coderunner.Request{RunID: "batch-job", Mode: mode, Code: "", Opts: map[string]any{"exec": code}, APIVersion: 3, Flush: &flush})
		if err != nil {
			if k.State() != kernel.Running {
				return
			}
			if timedOut() {
				result(false, "task-timeout", -2)
				return
			}
			ro.log.Warn("batch job", "kernel_id", kernelID, "error", err)
			time.Sleep(time.Second)
			continue
		}
		mode = "continue"
		switch res["status"] {
		case "finished":
			n, ok := res["exitCode"].(int)
			if !ok {
				n = -1
			}
			if n == 0 {
				result(true, "task-finished", 0)
			} else {
				result(false, "task-failed", n)
			}
			return
		case "exec-timeout":
			result(false, "task-timeout", -2)
			return
		}
	}
}
