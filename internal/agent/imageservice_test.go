package agent

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"reflect"
	"testing"

	"github.com/bai-agent/bai-agent/internal/backend"
	"github.com/bai-agent/bai-agent/internal/backend/fake"
	"github.com/bai-agent/bai-agent/internal/bgtask"
	"github.com/bai-agent/bai-agent/internal/config"
	"github.com/bai-agent/bai-agent/internal/event"
	"github.com/bai-agent/bai-agent/internal/image"
	"github.com/bai-agent/bai-agent/internal/kuser"
)

// The image service on its own: the auto_pull policies against what the
// runtime has, and what it remembers per image.
func TestImageServicePolicies_Fake(t *testing.T) {
	t.Parallel()
	be := fake.New()
	be.AddImage(backend.Image{ID: "sha256:aaa", Tags: []string{"cr.example/lab/py:1"}, Architecture: "amd64"})
	tasks := bgtask.New(func(context.Context, event.Event) {})
	t.Cleanup(tasks.Close)
	noKernels := func(id string) (*Kernel, *KernelSpec, error) { return nil, nil, kernelErr(id, ErrKernelNotFound) }
	s := newImageService(be, config.Defaults(), "i-x", slog.New(slog.NewTextHandler(io.Discard, nil)), LogSink{Log: slog.New(slog.NewTextHandler(io.Discard, nil))}, tasks, 0, noKernels)
	ctx := context.Background()
	ref, err := image.ParseRef("cr.example/lab/py:1", "lab", "cr.example", "x86_64", false)
	if err != nil {
		t.Fatal(err)
	}
	missing, err := image.ParseRef("cr.example/lab/py:2", "lab", "cr.example", "x86_64", false)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		ref      refOrMissing
		digest   string
		policy   string
		wantNeed bool
		wantErr  error
	}{
		{name: "tag present", ref: present, policy: AutoPullTag},
		{name: "tag missing", ref: absent, policy: AutoPullTag, wantNeed: true},
		{name: "digest equal", ref: present, digest: "sha256:aaa", policy: AutoPullDigest},
		{name: "digest differs", ref: present, digest: "sha256:bbb", policy: AutoPullDigest, wantNeed: true},
		{name: "none present", ref: present, policy: AutoPullNone},
		{name: "none missing", ref: absent, policy: AutoPullNone, wantErr: ErrImageNotAvailable},
	} {
		r := ref
		if tc.ref == absent {
			r = missing
		}
		_, need, err := s.checkImage(ctx, r, tc.digest, tc.policy)
		if tc.wantErr != nil {
			if !errors.Is(err, tc.wantErr) {
				t.Errorf("%s: %v, want %v", tc.name, err, tc.wantErr)
			}
			continue
		}
		if err != nil || need != tc.wantNeed {
			t.Errorf("%s: need %v err %v, want need %v", tc.name, need, err, tc.wantNeed)
		}
	}
	// A commit needs a running kernel; the service asks its lookup.
	if _, err := s.Commit(ctx, "k-none", "sub", "", "", nil); !errors.Is(err, ErrKernelNotFound) {
		t.Fatalf("commit of an unknown kernel: %v", err)
	}
	// An image without a readable /etc/passwd runs its kernels as the
	// default user, and what was learnt is remembered per image id.
	img := &backend.Image{ID: "sha256:aaa"}
	if got := s.imageUser(ctx, img); got != [2]int{kuser.Default, kuser.Default} {
		t.Fatalf("image user: %v", got)
	}
	if _, ok := s.imageUsers.Load("sha256:aaa"); !ok {
		t.Fatal("the image's user is not remembered")
	}
	if got := s.imageUser(ctx, nil); got != [2]int{kuser.Default, kuser.Default} {
		t.Fatalf("image user of no image: %v", got)
	}
}

type refOrMissing int

const (
	present refOrMissing = iota
	absent
)

// An image that leaves the node (docker rmi by an operator, a purge) is
// reported once to the manager with agent_installed_images_remove.
func TestImageScanReportsRemovedImages_Fake(t *testing.T) {
	t.Parallel()
	be := fake.New()
	be.AddImage(backend.Image{ID: "sha256:aaa", Tags: []string{"cr.example/lab/py:1", "cr.example/lab/py:latest"}, Architecture: "amd64", Labels: map[string]string{"ai.backend.kernelspec": "1"}})
	be.AddImage(backend.Image{ID: "sha256:bbb", Tags: []string{"cr.example/lab/r:4"}, Architecture: "amd64", Labels: map[string]string{"ai.backend.kernelspec": "1"}})
	tasks := bgtask.New(func(context.Context, event.Event) {})
	t.Cleanup(tasks.Close)
	rec := &recorder{}
	s := newImageService(be, config.Defaults(), "i-x", slog.New(slog.NewTextHandler(io.Discard, nil)), rec, tasks, 0, nil)
	ctx := context.Background()
	if _, err := s.Images(ctx); err != nil {
		t.Fatal(err)
	}
	if rec.has("agent_installed_images_remove") {
		t.Fatal("the first scan reported removals")
	}
	// An operator removes an image behind the agent's back.
	if err := be.RemoveImage(ctx, "cr.example/lab/r:4", true, false); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Images(ctx); err != nil {
		t.Fatal(err)
	}
	ev, ok := rec.findName("agent_installed_images_remove")
	if !ok {
		t.Fatal("no agent_installed_images_remove after an image went away")
	}
	want := map[string]any{"cr.example/lab/r:4": map[string]any{"canonical": "cr.example/lab/r:4", "digest": "sha256:bbb"}}
	if !reflect.DeepEqual(ev["scanned_images"], want) {
		t.Fatalf("scanned_images %v, want %v", ev["scanned_images"], want)
	}
	// A purge through the manager is reported at once, once.
	if _, err := s.PurgeImages(ctx, []string{"cr.example/lab/py:latest"}, true, false); err != nil {
		t.Fatal(err)
	}
	if n := rec.count("agent_installed_images_remove"); n != 2 {
		t.Fatalf("%d removal events after the purge, want 2", n)
	}
	if _, err := s.Images(ctx); err != nil {
		t.Fatal(err)
	}
	if n := rec.count("agent_installed_images_remove"); n != 2 {
		t.Fatalf("a scan without changes reported removals (%d events)", n)
	}
}
