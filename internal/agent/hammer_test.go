package agent

// The core under concurrent use (run it with -race): kernels are created,
// restarted, exit on their own and are destroyed while readers call the
// file RPCs, the heartbeat's agent info, the statistics targets, the GPU
// allocation map and the registry views. Nothing may race, every answer
// must be either right or the manager's "not running" error, and nothing
// may be left at the end.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bai-agent/bai-agent/internal/backend/fake"
	"github.com/bai-agent/bai-agent/internal/kernel"
)

func TestHammerLifecycle_Fake(t *testing.T) {
	t.Parallel()
	c := newCore(t, nil, nil)
	// Widen the windows between the creation's and restart's steps.
	c.be.Inject(fake.CallCreate, &fake.Fault{Delay: 5 * time.Millisecond})
	c.be.Inject(fake.CallStart, &fake.Fault{Delay: 5 * time.Millisecond})
	ctx := context.Background()

	var (
		stop                         = make(chan struct{})
		readers, lifecycles          sync.WaitGroup
		fileOK, fileRefused, created atomic.Int32
		restarted, exited, destroyed atomic.Int32
	)
	// notRunning is the only error a file call may meet on a kernel that
	// was in the registry a moment ago.
	notRunning := func(err error) bool { return err == nil || errors.Is(err, ErrKernelNotFound) }

	for r := 0; r < 4; r++ {
		readers.Add(1)
		go func(r int) {
			defer readers.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				_ = c.agent.AgentInfo(InfoOptions{})
				for _, st := range c.agent.StatTargets() {
					if st.ContainerID == "" || st.Pid <= 0 || st.ScratchDir == "" {
						t.Errorf("stat target without its details: %+v", st)
					}
				}
				_ = c.agent.ScanGPUAllocMap()
				_ = c.agent.AcceleratorContainerMeasures(ctx)
				for _, k := range c.agent.Kernels() {
					v := k.View()
					if v.State == kernel.Running && (v.ContainerID == "" || v.ReplIn == 0 || v.Allocation == nil) {
						t.Errorf("running kernel without its details: %+v", v)
					}
					if s := k.Spec(); s != nil {
						// A published spec is whole.
						if s.ContainerID == "" || s.Scratch.Work == "" || len(s.Environ) == 0 || s.Resources == nil {
							t.Errorf("kernel %s: a partial spec was published: %+v", k.ID, s)
						}
					}
					_ = c.agent.IsRunning(k.ID)
					name := fmt.Sprintf("r%d-%d.txt", r, i)
					body := []byte(name)
					err := c.agent.UploadFile(ctx, k.ID, name, body)
					if !notRunning(err) {
						t.Errorf("upload to %s (%s): %v", k.ID, k.State(), err)
						continue
					}
					if err != nil {
						fileRefused.Add(1)
						continue
					}
					got, err := c.agent.DownloadFile(ctx, k.ID, name)
					switch {
					case err == nil:
						if !bytes.Contains(got, body) {
							// download_file answers a tar archive holding
							// the file.
							t.Errorf("download of %s from %s: the archive lacks its content", name, k.ID)
						}
						fileOK.Add(1)
					case errors.Is(err, ErrKernelNotFound):
						fileRefused.Add(1)
					default:
						t.Errorf("download from %s (%s): %v", k.ID, k.State(), err)
					}
					if _, err := c.agent.ListFiles(ctx, k.ID, "."); !notRunning(err) {
						t.Errorf("list_files of %s (%s): %v", k.ID, k.State(), err)
					}
				}
			}
		}(r)
	}

	for w := 0; w < 4; w++ {
		lifecycles.Add(1)
		go func(w int) {
			defer lifecycles.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			for i := 0; i < 6; i++ {
				info, err := c.create(nil)
				if err != nil {
					t.Errorf("create: %v", err)
					return
				}
				created.Add(1)
				switch rng.IntN(4) {
				case 3:
					// A restart, then a destroy.
					if _, err := c.agent.RestartKernel(ctx, "", info.ID, map[string]string{"HAMMER": "2"}); err != nil {
						t.Errorf("restart %s: %v", info.ID, err)
					} else {
						restarted.Add(1)
					}
					if err := c.agent.DestroyKernel(ctx, info.ID, "", "", false); err != nil {
						t.Errorf("destroy %s: %v", info.ID, err)
					}
					destroyed.Add(1)
				case 0:
					// A restart, with a destroy racing it.
					var wg sync.WaitGroup
					wg.Add(1)
					go func() {
						defer wg.Done()
						if _, err := c.agent.RestartKernel(ctx, "", info.ID, map[string]string{"HAMMER": "1"}); err == nil {
							restarted.Add(1)
						} else if !errors.Is(err, ErrKernelNotFound) && !errors.Is(err, ErrRestartUnsupported) {
							t.Errorf("restart %s: %v", info.ID, err)
						}
					}()
					if err := c.agent.DestroyKernel(ctx, info.ID, "", "", false); err != nil {
						t.Errorf("destroy %s: %v", info.ID, err)
					}
					wg.Wait()
					destroyed.Add(1)
				case 1:
					// The container exits on its own (the die event and a
					// sync pass both see it), and the manager destroys the
					// kernel meanwhile.
					c.be.Exit(info.ContainerID, 1, false)
					exited.Add(1)
					_ = c.agent.SyncOnce(ctx)
					if err := c.agent.DestroyKernel(ctx, info.ID, "", "", false); err != nil {
						t.Errorf("destroy %s after its exit: %v", info.ID, err)
					}
				default:
					if err := c.agent.DestroyKernel(ctx, info.ID, "", "", false); err != nil {
						t.Errorf("destroy %s: %v", info.ID, err)
					}
					destroyed.Add(1)
				}
			}
		}(w)
	}
	lifecycles.Wait()
	close(stop)
	readers.Wait()
	waitFor(t, engineVerdictWait+10*time.Second, "every kernel cleaned", func() bool { return len(c.agent.Kernels()) == 0 })
	c.assertNothingTaken("after the hammer")
	if fileOK.Load() == 0 {
		t.Fatalf("no file call reached a running kernel (refused %d): the readers proved nothing", fileRefused.Load())
	}
	// Exactly one kernel_terminated per kernel, however many paths saw
	// its end.
	perKernel := map[string]int{}
	c.events.mu.Lock()
	for _, e := range c.events.events {
		if e.Name == "kernel_terminated" {
			perKernel[fmt.Sprint(e.Payload["kernel_id"])]++
		}
	}
	c.events.mu.Unlock()
	if len(perKernel) != int(created.Load()) {
		t.Errorf("kernel_terminated for %d kernels, %d were created", len(perKernel), created.Load())
	}
	for id, n := range perKernel {
		if n != 1 {
			t.Errorf("kernel %s: %d kernel_terminated events", id, n)
		}
	}
	t.Logf("created %d, restarted %d, exited %d, destroyed %d; file calls: %d answered, %d refused (not running)",
		created.Load(), restarted.Load(), exited.Load(), destroyed.Load(), fileOK.Load(), fileRefused.Load())
}
