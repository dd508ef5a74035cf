package agent

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/bai-agent/bai-agent/internal/backend/fake"
	"github.com/bai-agent/bai-agent/internal/config"
	"github.com/bai-agent/bai-agent/internal/kernel"
	"github.com/bai-agent/bai-agent/internal/ports"
	"github.com/bai-agent/bai-agent/internal/testutil"
)

// A root agent with kernel-uid -1 (upstream's default: "the agent's own
// uid") never hands its root to user code: the kernel gets the image's own
// work user, else 1000, looked up once per image. uid 0 only when
// configured or sent by the manager.
func TestKernelUserNeverImplicitRoot_Fake(t *testing.T) {
	testutil.RequireRoot(t)
	zero, five := 0, 5
	for _, tc := range []struct {
		name      string
		passwd    string // "" : the image has none
		kernelUID int
		uid       *int
		want      string
	}{
		{"image work user", "root:x:0:0::/root:/bin/sh\nwork:x:1001:1002::/home/work:/bin/sh\n", -1, nil, "1001:1002"},
		{"no passwd", "", -1, nil, "1000:1000"},
		{"work is root", "work:x:0:0::/home/work:/bin/sh\n", -1, nil, "1000:1000"},
		{"configured root (gid still implicit)", "", 0, nil, "0:1000"},
		{"configured uid", "", 2000, nil, "2000:1000"},
		{"manager's uid 0", "", -1, &zero, "0:1000"},
		{"manager's uid", "", -1, &five, "5:1000"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCore(t, func(cfg *config.Config) { cfg.Container.KernelUID = tc.kernelUID }, nil)
			if tc.passwd != "" {
				c.be.SetImageFile(fakeImage, "/etc/passwd", []byte(tc.passwd))
			}
			for i := 0; i < 2; i++ {
				info, err := c.create(func(cfg *CreationConfig) { cfg.UID = tc.uid })
				if err != nil {
					t.Fatal(err)
				}
				k, _ := c.agent.Kernel(info.ID)
				if got := k.Spec().Environ["LOCAL_USER_ID"] + ":" + k.Spec().Environ["LOCAL_GROUP_ID"]; got != tc.want {
					t.Fatalf("LOCAL_USER_ID:LOCAL_GROUP_ID = %s, want %s", got, tc.want)
				}
			}
			if n := c.be.CallCount(fake.CallReadImageFile); n > 1 {
				t.Fatalf("the image's passwd was read %d times (once per image)", n)
			}
		})
	}
}

// Under the test suite's switch, an agent given a port range inside the
// host's ephemeral range refuses to start (that range is what made
// TestViewDuringCreation_Fake fail once in a few runs); outside it, the
// same agent starts.
func TestPortRangeInsideEphemeralRefused_Fake(t *testing.T) {
	lo, _, err := ports.EphemeralRange()
	if err != nil {
		t.Fatalf("no ephemeral range: %v", err)
	}
	c := newCore(t, nil, nil)
	t.Setenv(ForbidEphemeralPortsEnv, "1")
	opts := c.opts
	cfg := *opts.Config
	cfg.Container.PortRange = config.PortRange{lo + 100, lo + 119}
	opts.Config = &cfg
	if a, err := New(context.Background(), opts); err == nil || !strings.Contains(err.Error(), "ephemeral range") {
		if a != nil {
			a.Close()
		}
		t.Fatalf("an agent with port-range %v started: %v", cfg.Container.PortRange, err)
	}
}

// File RPCs against a kernel being created (its environment and scratch
// still being written) or restarted answer KeyError and touch nothing;
// under -race this is the probe of the data race that let a concurrent
// map read and write crash the agent. Once running, they work.
func TestFileRPCsOnlyOnRunningKernels_Fake(t *testing.T) {
	c := newCore(t, nil, nil)
	// Slow steps before and after the files are written, so that calls
	// come in while the creation writes the kernel's fields (long enough
	// that a descheduled test goroutine still sees the window).
	c.be.Inject(fake.CallInspectImage, &fake.Fault{Delay: 300 * time.Millisecond})
	c.be.Inject(fake.CallCreate, &fake.Fault{Delay: 300 * time.Millisecond})
	kid := uuid.NewString()
	done := make(chan error, 1)
	go func() {
		_, err := c.agent.CreateKernels(context.Background(), fakeRequest(kid, nil))
		done <- err
	}()
	ctx := context.Background()
	refused := 0
	for created := false; !created; {
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
			created = true
		default:
		}
		if k, ok := c.agent.Kernel(kid); ok && !created && k.State() != kernel.Running {
			err := c.agent.UploadFile(ctx, kid, "x.txt", []byte("x"))
			if err != nil && !errors.Is(err, ErrKernelNotFound) {
				t.Fatalf("upload during creation: %v", err)
			}
			if _, err := c.agent.ListFiles(ctx, kid, "."); err != nil && !errors.Is(err, ErrKernelNotFound) {
				t.Fatalf("list during creation: %v", err)
			}
			if err != nil {
				refused++
			}
		}
	}
	if refused == 0 {
		t.Fatal("no file call was made while the kernel was being created: the test proved nothing")
	}
	if err := c.agent.UploadFile(ctx, kid, "x.txt", []byte("x")); err != nil {
		t.Fatalf("upload on the running kernel: %v", err)
	}
	// Restart (environment updated) while file calls come in.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if err := c.agent.UploadFile(ctx, kid, "y.txt", []byte("y")); err != nil && !errors.Is(err, ErrKernelNotFound) {
				t.Errorf("upload during restart: %v", err)
			}
		}
	}()
	k, _ := c.agent.Kernel(kid)
	if _, err := c.agent.RestartKernel(ctx, k.SessionID, kid, map[string]string{"NEW_VAR": "1"}); err != nil {
		t.Fatal(err)
	}
	close(stop)
	wg.Wait()
	if k, _ := c.agent.Kernel(kid); k.Spec().Environ["NEW_VAR"] != "1" {
		t.Fatalf("restart lost the updated environment: %v", k.Spec().Environ)
	}
}
