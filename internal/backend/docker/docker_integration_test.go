package docker_test

import (
	"context"
	"errors"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/bai-agent/bai-agent/internal/backend"
	"github.com/bai-agent/bai-agent/internal/testutil"
)

// The Docker backend against the real engine: create with labels, ports
// and limits, start, inspect, logs of a container without a TTY
// (demultiplexed stdout and stderr), the event stream, stop, idempotent
// removal, and ErrNotFound where the contract says so.
func TestContainerLifecycle_Integration(t *testing.T) {
	be := testutil.RequireDocker(t)
	img := testutil.TestImage(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	label := "bai-backend-test-" + uuid.NewString()[:8]
	t.Cleanup(func() { testutil.RemoveContainers(t, map[string]string{"bai.test": label}) })
	port := testutil.FreePort(t)
	evs, errc := be.Events(ctx)
	id, err := be.Create(ctx, &backend.ContainerSpec{
		Name: label, Image: img, Labels: map[string]string{"bai.test": label},
		Cmd:    []string{"/bin/sh", "-c", "echo to-stdout; echo to-stderr >&2; sleep 300"},
		Memory: 64 << 20, PidsLimit: 64, StopSignal: "SIGKILL",
		Ports: []backend.PortBinding{{ContainerPort: 8080, Protocol: "tcp", HostIP: "127.0.0.1", HostPort: port}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := be.Create(ctx, &backend.ContainerSpec{Name: label, Image: img}); !errors.Is(err, backend.ErrConflict) {
		t.Fatalf("second container with the same name: %v, want ErrConflict", err)
	}
	if err := be.Start(ctx, id); err != nil {
		t.Fatal(err)
	}
	ins, err := be.Inspect(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if !ins.Running || ins.Pid <= 0 || ins.Memory != 64<<20 || ins.Labels["bai.test"] != label || len(ins.Ports) != 1 || ins.Ports[0].HostPort != port {
		t.Fatalf("inspect: %+v", ins)
	}
	list, err := be.List(ctx, map[string]string{"bai.test": label})
	if err != nil || len(list) != 1 || list[0].ID != id {
		t.Fatalf("list: %v %+v", err, list)
	}
	testutil.Eventually(t, 10*time.Second, "both output lines in the logs", func() bool {
		b, err := be.Logs(ctx, id, false, 0)
		return err == nil && strings.Contains(string(b), "to-stdout\n") && strings.Contains(string(b), "to-stderr\n")
	})
	if b, err := be.Logs(ctx, id, false, 10); err != nil || len(b) != 10 {
		t.Fatalf("log tail: %q %v", b, err)
	}
	if err := be.Stop(ctx, id, time.Second); err != nil {
		t.Fatal(err)
	}
	sawDie := false
	deadline := time.After(10 * time.Second)
	for !sawDie {
		select {
		case ev := <-evs:
			sawDie = ev.ContainerID == id && ev.Action == "die"
		case err := <-errc:
			t.Fatalf("event stream ended: %v", err)
		case <-deadline:
			t.Fatal("no die event")
		}
	}
	if ins, err := be.Inspect(ctx, id); err != nil || ins.Running || ins.Alive() {
		t.Fatalf("after stop: %+v %v", ins, err)
	}
	if err := be.Remove(ctx, id); err != nil {
		t.Fatal(err)
	}
	if err := be.Remove(ctx, id); err != nil {
		t.Fatalf("removing a removed container: %v", err)
	}
	if _, err := be.Inspect(ctx, id); !errors.Is(err, backend.ErrNotFound) {
		t.Fatalf("inspect after removal: %v, want ErrNotFound", err)
	}
	if _, err := be.InspectImage(ctx, "bai-test/no-such-image:1"); !errors.Is(err, backend.ErrNotFound) {
		t.Fatalf("missing image: %v, want ErrNotFound", err)
	}
	if v, err := be.Ping(ctx); err != nil || v == "" {
		t.Fatalf("ping: %q %v", v, err)
	}
}

// ReadImageFile reads a regular file of an image through a container that
// is never started and is removed afterwards; anything else (missing,
// a folder, a link) is ErrNotFound.
func TestReadImageFile_Integration(t *testing.T) {
	be := testutil.RequireDocker(t)
	img := testutil.TestImage(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	b, err := be.ReadImageFile(ctx, img, "/etc/passwd", 1<<20)
	if err != nil || !strings.HasPrefix(string(b), "root:x:0:0:") {
		t.Fatalf("/etc/passwd: %q %v", b, err)
	}
	for _, p := range []string{"/etc/missing", "/bin", "/bin/sh"} {
		if _, err := be.ReadImageFile(ctx, img, p, 1<<20); !errors.Is(err, backend.ErrNotFound) {
			t.Errorf("%s: %v, want ErrNotFound", p, err)
		}
	}
	if _, err := be.ReadImageFile(ctx, img, "/bin/busybox", 1024); err == nil {
		t.Error("a file over the limit was read")
	}
	left, err := be.List(ctx, map[string]string{"ai.backend.bai-agent.probe": "image-file"})
	if err != nil || len(left) != 0 {
		t.Fatalf("probe containers left: %d %v", len(left), err)
	}
}

// An image labelled as one of an agent's kernels (a committed kernel is)
// and declaring a VOLUME: its probes never look like that kernel to the
// agent (which would destroy it as a stray and report the forged kernel
// terminated), and leave no volume behind.
func TestReadImageFileOfForgedImage_Integration(t *testing.T) {
	be := testutil.RequireDocker(t)
	img := testutil.TestImage(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	owner := "i-forged-" + strings.ReplaceAll(uuid.NewString(), "-", "")[:8]
	tag := "bai-test/forged:" + owner[len(owner)-8:]
	out, err := exec.Command("docker", "create", img).Output()
	if err != nil {
		t.Fatal(err)
	}
	cid := strings.TrimSpace(string(out))
	defer exec.Command("docker", "rm", "-f", cid).Run()
	if out, err := exec.Command("docker", "commit", "--change", "LABEL ai.backend.owner="+owner, "--change", "LABEL ai.backend.kernel-id="+uuid.NewString(),
		"--change", "VOLUME /data", cid, tag).CombinedOutput(); err != nil {
		t.Fatalf("docker commit: %v %s", err, out)
	}
	defer exec.Command("docker", "rmi", "-f", tag).Run()
	volumes := func() int {
		out, err := exec.Command("docker", "volume", "ls", "-q").Output()
		if err != nil {
			t.Fatal(err)
		}
		return len(strings.Fields(string(out)))
	}
	before := volumes()
	stop := make(chan struct{})
	seen := make(chan int, 1)
	go func() {
		n := 0
		for {
			select {
			case <-stop:
				seen <- n
				return
			default:
			}
			if l, err := be.List(ctx, map[string]string{"ai.backend.owner": owner}); err == nil {
				n += len(l)
			}
		}
	}()
	for range 5 {
		if b, err := be.ReadImageFile(ctx, tag, "/etc/passwd", 1<<20); err != nil || !strings.HasPrefix(string(b), "root:") {
			t.Fatalf("/etc/passwd of the forged image: %q %v", b, err)
		}
	}
	close(stop)
	if n := <-seen; n != 0 {
		t.Fatalf("a probe was listed %d times as a container of agent %s", n, owner)
	}
	if after := volumes(); after != before {
		t.Fatalf("volumes %d -> %d: the probes left their anonymous volumes", before, after)
	}
}
