package watcher

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Controller starts, stops and reports the agent.
type Controller interface {
	// Status is systemd's word for the agent: active, inactive,
	// activating, deactivating or failed.
	Status(ctx context.Context) string
	Start(ctx context.Context) error
	Stop(ctx context.Context) error
	Restart(ctx context.Context) error
	// Reload is the soft reset.
	Reload(ctx context.Context) error
}

// Systemd controls the agent's unit with systemctl.
type Systemd struct {
	Unit string
}

func (s Systemd) systemctl(ctx context.Context, verb string) (string, error) {
	var out, errb bytes.Buffer
	cmd := exec.CommandContext(ctx, "systemctl", verb, s.Unit)
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if err != nil && verb != "is-active" { // is-active exits 3 when inactive
		return "", fmt.Errorf("systemctl %s %s: %w: %s", verb, s.Unit, err, strings.TrimSpace(errb.String()))
	}
	return strings.TrimSpace(out.String()), nil
}

// Status runs systemctl is-active.
func (s Systemd) Status(ctx context.Context) string {
	out, _ := s.systemctl(ctx, "is-active")
	if out == "" {
		return "unknown"
	}
	return out
}

// Start runs systemctl start.
func (s Systemd) Start(ctx context.Context) error { _, err := s.systemctl(ctx, "start"); return err }

// Stop runs systemctl stop.
func (s Systemd) Stop(ctx context.Context) error { _, err := s.systemctl(ctx, "stop"); return err }

// Restart runs systemctl restart.
func (s Systemd) Restart(ctx context.Context) error {
	_, err := s.systemctl(ctx, "restart")
	return err
}

// Reload runs systemctl reload.
func (s Systemd) Reload(ctx context.Context) error { _, err := s.systemctl(ctx, "reload"); return err }

// HasSystemd says whether the host runs systemd (as sd_booted does).
func HasSystemd() bool {
	st, err := os.Stat("/run/systemd/system")
	return err == nil && st.IsDir()
}

// Supervisor runs the agent as a child process. A child that exits
// without being asked to is started again after a backoff that doubles
// from MinBackoff up to MaxBackoff and starts over once a child has run
// for StableAfter.
type Supervisor struct {
	Argv        []string
	Stdout      *os.File // the child's output (nil: the watcher's)
	Log         *slog.Logger
	MinBackoff  time.Duration
	MaxBackoff  time.Duration
	StableAfter time.Duration
	StopTimeout time.Duration // SIGTERM, then SIGKILL after this

	mu    sync.Mutex
	want  bool      // the agent should run
	cmd   *exec.Cmd // the running child, nil when none
	done  chan struct{}
	state string
	wake  chan struct{}
	// spawns counts start attempts; spawnErr is the last one's failure
	// (nil when it started), so Start can answer at once.
	spawns   int
	spawnErr error
}

func (s *Supervisor) init() {
	if s.wake == nil {
		s.wake = make(chan struct{}, 1)
		s.state = "inactive"
	}
	if s.MinBackoff == 0 {
		s.MinBackoff = time.Second
	}
	if s.MaxBackoff == 0 {
		s.MaxBackoff = 30 * time.Second
	}
	if s.StableAfter == 0 {
		s.StableAfter = time.Minute
	}
	if s.StopTimeout == 0 {
		s.StopTimeout = 60 * time.Second
	}
	if s.Log == nil {
		s.Log = slog.Default()
	}
}

// Run keeps the agent running while it is wanted, until ctx ends; then
// it stops the child.
func (s *Supervisor) Run(ctx context.Context) {
	s.mu.Lock()
	s.init()
	s.mu.Unlock()
	backoff := s.MinBackoff
	for {
		s.mu.Lock()
		want := s.want
		s.mu.Unlock()
		if !want {
			select {
			case <-ctx.Done():
				return
			case <-s.wake:
				continue
			}
		}
		started := time.Now()
		done, err := s.spawn()
		if err != nil {
			s.Log.Error("agent did not start", "err", err)
			s.setState("failed")
		} else {
			select {
			case <-done:
			case <-ctx.Done():
				_ = s.Stop(context.Background())
				return
			}
		}
		s.mu.Lock()
		want = s.want
		s.mu.Unlock()
		if !want {
			continue // stopped on request
		}
		if time.Since(started) >= s.StableAfter {
			backoff = s.MinBackoff
		}
		s.Log.Warn("agent exited; starting it again", "after", backoff)
		s.setState("activating")
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		case <-s.wake:
		}
		backoff = min(backoff*2, s.MaxBackoff)
	}
}

func (s *Supervisor) setState(st string) {
	s.mu.Lock()
	s.state = st
	s.mu.Unlock()
}

// spawn starts one child and returns a channel closed when it exits.
func (s *Supervisor) spawn() (chan struct{}, error) {
	cmd := exec.Command(s.Argv[0], s.Argv[1:]...)
	out := s.Stdout
	if out == nil {
		out = os.Stderr
	}
	cmd.Stdout, cmd.Stderr = out, out
	// Its own process group: a signal to the watcher's terminal does not
	// reach the agent, and kernels (containers) are not its children.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		s.mu.Lock()
		s.spawns++
		s.spawnErr = err
		s.mu.Unlock()
		return nil, err
	}
	done := make(chan struct{})
	s.mu.Lock()
	s.spawns++
	s.spawnErr = nil
	s.cmd, s.done, s.state = cmd, done, "active"
	s.mu.Unlock()
	s.Log.Info("agent started", "pid", cmd.Process.Pid)
	go func() {
		err := cmd.Wait()
		s.mu.Lock()
		s.cmd = nil
		if s.want {
			s.state = "failed"
		} else {
			s.state = "inactive"
		}
		s.mu.Unlock()
		s.Log.Info("agent exited", "pid", cmd.Process.Pid, "status", fmt.Sprint(err))
		close(done)
	}()
	return done, nil
}

// Status is active while a child runs.
func (s *Supervisor) Status(context.Context) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.init()
	return s.state
}

// PID is the running child's, 0 when none.
func (s *Supervisor) PID() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return 0
	}
	return s.cmd.Process.Pid
}

func (s *Supervisor) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Start asks for the agent to run and waits until a child is started
// (by Run, which must be running).
func (s *Supervisor) Start(ctx context.Context) error {
	s.mu.Lock()
	s.init()
	s.want = true
	before := s.spawns
	s.mu.Unlock()
	s.poke()
	for {
		if s.PID() != 0 {
			return nil
		}
		// A binary that cannot be started fails at once, not after the
		// caller's deadline.
		s.mu.Lock()
		tried, err := s.spawns > before, s.spawnErr
		s.mu.Unlock()
		if tried && err != nil {
			return fmt.Errorf("agent start: %w", err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("agent start: %w", ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Stop asks the child to stop (SIGTERM; SIGKILL after StopTimeout) and
// waits for it to exit. Kernels keep running: they are Docker's.
func (s *Supervisor) Stop(ctx context.Context) error {
	s.mu.Lock()
	s.init()
	s.want = false
	cmd, done := s.cmd, s.done
	if cmd != nil {
		s.state = "deactivating"
	}
	s.mu.Unlock()
	s.poke()
	if cmd == nil {
		return nil
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
		return nil
	case <-time.After(s.StopTimeout):
		_ = cmd.Process.Kill()
		<-done
		return nil
	case <-ctx.Done():
		return fmt.Errorf("agent stop: %w", ctx.Err())
	}
}

// Restart stops and starts the agent.
func (s *Supervisor) Restart(ctx context.Context) error {
	if err := s.Stop(ctx); err != nil {
		return err
	}
	return s.Start(ctx)
}

// Reload is a restart: the agent has no in-place reload, and a restart
// keeps its kernels.
func (s *Supervisor) Reload(ctx context.Context) error { return s.Restart(ctx) }
