package agent

import (
	"testing"
	"time"
)

// BUG: an inference kernel whose model start command cannot be built
// (malformed VLLM_EXTRA_ARGS) deadlocks its own creation: publish calls
// startModelServices under the creation's per-kernel lock, and
// startModelServices calls failModelService -> DestroyKernel
// synchronously on that error path, which waits for the same lock until
// failModelService's 2-minute context expires. create_kernels then
// answers success after 2 minutes and the kernel stays RUNNING with no
// model service (the destroy failed).
func TestInferenceBadExtraArgsDestroysKernel_Fake(t *testing.T) {
	t.Parallel()
	models := t.TempDir()
	c := newCore(t, nil, nil)
	type result struct {
		info *KernelInfo
		err  error
	}
	done := make(chan result, 1)
	go func() {
		info, err := c.create(func(r *CreationConfig) {
			r.SessionType = "inference"
			r.Mounts = []MountSpec{{Name: "llama", VFID: "vf-1", HostPath: models, KernelPath: "/models", MountPerm: "ro", UsageMode: "model"}}
			r.InternalData = map[string]any{"model_definition": map[string]any{"models": []any{
				map[string]any{"name": "llm", "model_path": "/models", "service": map[string]any{"start_command": "serve", "port": 8000}},
			}}}
			r.Environ["VLLM_EXTRA_ARGS"] = `--x "open`
		})
		done <- result{info, err}
	}()
	var res result
	select {
	case res = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("create_kernels of an inference kernel with malformed VLLM_EXTRA_ARGS did not return within 10 s (self-deadlock on the kernel lock)")
	}
	if res.err == nil {
		waitFor(t, 10*time.Second, "kernel_terminated", func() bool {
			_, ok := c.events.find("kernel_terminated", res.info.ID)
			return ok
		})
		if ev, _ := c.events.find("kernel_terminated", res.info.ID); ev["reason"] != ReasonFailedToStart {
			t.Fatalf("kernel_terminated %v, want %s", ev, ReasonFailedToStart)
		}
	}
}
