package fake

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/bai-agent/bai-agent/internal/backend"
)

// Call names for Inject: one per method of backend.Backend and
// backend.Images.
const (
	CallCreate        = "Create"
	CallStart         = "Start"
	CallStop          = "Stop"
	CallRemove        = "Remove"
	CallInspect       = "Inspect"
	CallList          = "List"
	CallInspectImage  = "InspectImage"
	CallReadImageFile = "ReadImageFile"
	CallLogs          = "Logs"
	CallPing          = "Ping"
	CallPullImage     = "PullImage"
	CallListImages    = "ListImages"
	// CallEngineInfo is injectable too, but not in Calls: only a
	// start-up with a sandbox runtime asks for it.
	CallEngineInfo = "EngineInfo"
)

// Calls lists every injectable call.
var Calls = []string{CallCreate, CallStart, CallStop, CallRemove, CallInspect, CallList, CallInspectImage, CallReadImageFile, CallLogs, CallPing, CallPullImage, CallListImages}

// Fault is what happens to a call: Err is returned (after Delay); Hang
// blocks until the caller's context ends. Times limits how many calls it
// hits (0: every call).
type Fault struct {
	Err   error
	Delay time.Duration
	Hang  bool
	Times int
}

type container struct {
	backend.Container
	spec *backend.ContainerSpec
}

// Backend is the in-memory runtime. The zero value is not usable; use New.
type Backend struct {
	mu         sync.Mutex
	containers map[string]*container
	images     map[string]*backend.Image // by every tag and by id
	registry   map[string]*backend.Image // pullable images
	faults     map[string]*Fault
	files      map[string]map[string][]byte // image id -> path -> content
	calls      map[string]int
	subs       []chan backend.Event
	nextID     int
	pid        int
	runtimes   []string // EngineInfo's Runtimes
}

// New returns an empty runtime.
func New() *Backend {
	return &Backend{containers: map[string]*container{}, images: map[string]*backend.Image{}, registry: map[string]*backend.Image{},
		faults: map[string]*Fault{}, calls: map[string]int{}, pid: 1000}
}

// AddImage makes an image present under its tags.
func (b *Backend) AddImage(img backend.Image) {
	b.mu.Lock()
	defer b.mu.Unlock()
	i := img
	b.images[i.ID] = &i
	for _, t := range i.Tags {
		b.images[t] = &i
	}
}

// AddRegistryImage makes an image pullable under ref.
func (b *Backend) AddRegistryImage(ref string, img backend.Image) {
	b.mu.Lock()
	defer b.mu.Unlock()
	i := img
	i.Tags = append([]string(nil), ref)
	b.registry[ref] = &i
}

// Inject sets the fault of a call (nil clears it).
func (b *Backend) Inject(call string, f *Fault) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if f == nil {
		delete(b.faults, call)
		return
	}
	c := *f
	b.faults[call] = &c
}

// CallCount returns how often a call was made.
func (b *Backend) CallCount(call string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.calls[call]
}

// enter counts a call and applies its fault.
func (b *Backend) enter(ctx context.Context, call string) error {
	b.mu.Lock()
	b.calls[call]++
	f := b.faults[call]
	if f != nil && f.Times > 0 {
		f.Times--
		if f.Times == 0 {
			delete(b.faults, call)
		}
	}
	b.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return err
	}
	if f == nil {
		return nil
	}
	if f.Hang {
		<-ctx.Done()
		return ctx.Err()
	}
	if f.Delay > 0 {
		select {
		case <-time.After(f.Delay):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return f.Err
}

func (b *Backend) emit(ev backend.Event) {
	for _, s := range b.subs {
		select {
		case s <- ev:
		default: // a slow subscriber misses events, as with a real stream
		}
	}
}

// Create implements backend.Backend.
func (b *Backend) Create(ctx context.Context, spec *backend.ContainerSpec) (string, error) {
	if err := b.enter(ctx, CallCreate); err != nil {
		return "", err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.images[spec.Image]; !ok {
		return "", fmt.Errorf("%w: no such image %s", backend.ErrNotFound, spec.Image)
	}
	for _, c := range b.containers {
		if c.Name == spec.Name {
			return "", fmt.Errorf("%w: container name %s is in use", backend.ErrConflict, spec.Name)
		}
	}
	b.nextID++
	id := fmt.Sprintf("%064x", b.nextID)
	labels := map[string]string{}
	for k, v := range spec.Labels {
		labels[k] = v
	}
	var mounts []backend.Mount
	mounts = append(mounts, spec.Mounts...)
	b.containers[id] = &container{spec: spec, Container: backend.Container{
		ID: id, Name: spec.Name, Image: spec.Image, Labels: labels, Status: "created", Tty: spec.Tty,
		CpusetCpus: spec.CpusetCpus, NanoCPUs: spec.NanoCPUs, Memory: spec.Memory, ShmSize: spec.ShmSize, PidsLimit: spec.PidsLimit,
		WriteBps: spec.WriteBps, Mounts: mounts, Runtime: spec.Runtime,
	}}
	return id, nil
}

// Start implements backend.Backend.
func (b *Backend) Start(ctx context.Context, id string) error {
	if err := b.enter(ctx, CallStart); err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	c, ok := b.containers[id]
	if !ok {
		return fmt.Errorf("%w: container %s", backend.ErrNotFound, id)
	}
	b.pid++
	c.Status, c.Running, c.Pid, c.StartedAt = "running", true, b.pid, time.Now()
	c.Ports = append([]backend.PortBinding(nil), c.spec.Ports...)
	b.emit(backend.Event{ContainerID: id, Action: "start", Labels: c.Labels, Time: time.Now()})
	return nil
}

// Exit makes a running container exit with code (as if its process
// ended), emitting oom (when oom) and die.
func (b *Backend) Exit(id string, code int, oom bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	c, ok := b.containers[id]
	if !ok || !c.Running {
		return
	}
	b.stopLocked(c, code, oom)
}

func (b *Backend) stopLocked(c *container, code int, oom bool) {
	c.Status, c.Running, c.ExitCode, c.OOMKilled, c.Pid, c.FinishedAt = "exited", false, code, oom, 0, time.Now()
	if oom {
		b.emit(backend.Event{ContainerID: c.ID, Action: "oom", Labels: c.Labels, Time: time.Now()})
	}
	b.emit(backend.Event{ContainerID: c.ID, Action: "die", Labels: c.Labels, ExitCode: code, Time: time.Now()})
}

// Stop implements backend.Backend.
func (b *Backend) Stop(ctx context.Context, id string, _ time.Duration) error {
	if err := b.enter(ctx, CallStop); err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	c, ok := b.containers[id]
	if !ok {
		return fmt.Errorf("%w: container %s", backend.ErrNotFound, id)
	}
	if c.Running {
		b.stopLocked(c, 137, false)
	}
	return nil
}

// Remove implements backend.Backend.
func (b *Backend) Remove(ctx context.Context, id string) error {
	if err := b.enter(ctx, CallRemove); err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	c, ok := b.containers[id]
	if !ok {
		return nil
	}
	if c.Running {
		b.stopLocked(c, 137, false)
	}
	delete(b.containers, id)
	b.emit(backend.Event{ContainerID: id, Action: "destroy", Labels: c.Labels, Time: time.Now()})
	return nil
}

// Inspect implements backend.Backend.
func (b *Backend) Inspect(ctx context.Context, id string) (*backend.Container, error) {
	if err := b.enter(ctx, CallInspect); err != nil {
		return nil, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	c, ok := b.containers[id]
	if !ok {
		return nil, fmt.Errorf("%w: container %s", backend.ErrNotFound, id)
	}
	cp := c.Container
	return &cp, nil
}

// List implements backend.Backend.
func (b *Backend) List(ctx context.Context, labels map[string]string) ([]backend.Container, error) {
	if err := b.enter(ctx, CallList); err != nil {
		return nil, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []backend.Container
	for _, c := range b.containers {
		match := true
		for k, v := range labels {
			if c.Labels[k] != v {
				match = false
			}
		}
		if match {
			out = append(out, c.Container)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// SetRuntimes sets the runtimes EngineInfo reports (default: runc).
func (b *Backend) SetRuntimes(names ...string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.runtimes = append([]string(nil), names...)
}

// EngineInfo implements backend.EngineInspector.
func (b *Backend) EngineInfo(ctx context.Context) (*backend.EngineInfo, error) {
	if err := b.enter(ctx, CallEngineInfo); err != nil {
		return nil, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	rts := []string{"runc"}
	if b.runtimes != nil {
		rts = append([]string(nil), b.runtimes...)
	}
	return &backend.EngineInfo{Name: "Fake Engine", ServerVersion: "0", Runtimes: rts}, nil
}

// Spec returns a copy of the spec a container was created with (nil when
// there is no such container), e.g. to check the runtime it was given.
func (b *Backend) Spec(id string) *backend.ContainerSpec {
	b.mu.Lock()
	defer b.mu.Unlock()
	c, ok := b.containers[id]
	if !ok || c.spec == nil {
		return nil
	}
	cp := *c.spec
	return &cp
}

// Containers returns every container (for assertions).
func (b *Backend) Containers() []backend.Container {
	out, _ := b.List(context.Background(), nil)
	return out
}

// Events implements backend.Backend.
func (b *Backend) Events(ctx context.Context) (<-chan backend.Event, <-chan error) {
	ch := make(chan backend.Event, 256)
	errc := make(chan error, 1)
	b.mu.Lock()
	b.subs = append(b.subs, ch)
	b.mu.Unlock()
	out := make(chan backend.Event)
	go func() {
		defer close(out)
		defer func() {
			b.mu.Lock()
			for i, s := range b.subs {
				if s == ch {
					b.subs = append(b.subs[:i], b.subs[i+1:]...)
					break
				}
			}
			b.mu.Unlock()
		}()
		for {
			select {
			case <-ctx.Done():
				errc <- ctx.Err()
				return
			case ev := <-ch:
				select {
				case out <- ev:
				case <-ctx.Done():
					errc <- ctx.Err()
					return
				}
			}
		}
	}()
	return out, errc
}

// SetImageFile gives an image (by any of its names) a regular file.
func (b *Backend) SetImageFile(ref, path string, data []byte) {
	b.mu.Lock()
	defer b.mu.Unlock()
	img, ok := b.images[ref]
	if !ok {
		panic("fake: SetImageFile on an unknown image " + ref)
	}
	if b.files == nil {
		b.files = map[string]map[string][]byte{}
	}
	if b.files[img.ID] == nil {
		b.files[img.ID] = map[string][]byte{}
	}
	b.files[img.ID][path] = append([]byte(nil), data...)
}

// ReadImageFile implements backend.Backend.
func (b *Backend) ReadImageFile(ctx context.Context, ref, path string, limit int64) ([]byte, error) {
	if err := b.enter(ctx, CallReadImageFile); err != nil {
		return nil, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	img, ok := b.images[ref]
	if !ok {
		return nil, fmt.Errorf("%w: image %s", backend.ErrNotFound, ref)
	}
	data, ok := b.files[img.ID][path]
	if !ok {
		return nil, fmt.Errorf("%w: %s in image %s", backend.ErrNotFound, path, ref)
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%s of %s is %d bytes (limit %d)", path, ref, len(data), limit)
	}
	return append([]byte(nil), data...), nil
}

// InspectImage implements backend.Backend.
func (b *Backend) InspectImage(ctx context.Context, ref string) (*backend.Image, error) {
	if err := b.enter(ctx, CallInspectImage); err != nil {
		return nil, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	img, ok := b.images[ref]
	if !ok {
		return nil, fmt.Errorf("%w: image %s", backend.ErrNotFound, ref)
	}
	cp := *img
	return &cp, nil
}

// Logs implements backend.Backend.
func (b *Backend) Logs(ctx context.Context, id string, _ bool, _ int64) ([]byte, error) {
	if err := b.enter(ctx, CallLogs); err != nil {
		return nil, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.containers[id]; !ok {
		return nil, fmt.Errorf("%w: container %s", backend.ErrNotFound, id)
	}
	return []byte("log of " + id[:12] + "\n"), nil
}

// Ping implements backend.Backend.
func (b *Backend) Ping(ctx context.Context) (string, error) {
	if err := b.enter(ctx, CallPing); err != nil {
		return "", err
	}
	return "1.41", nil
}

// ListImages implements backend.Images.
func (b *Backend) ListImages(ctx context.Context) ([]backend.Image, error) {
	if err := b.enter(ctx, CallListImages); err != nil {
		return nil, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	seen := map[string]bool{}
	var out []backend.Image
	for _, img := range b.images {
		if !seen[img.ID] {
			seen[img.ID] = true
			out = append(out, *img)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// PullImage implements backend.Images: a registry image becomes present.
func (b *Backend) PullImage(ctx context.Context, ref, _ string, progress backend.Progress) error {
	if err := b.enter(ctx, CallPullImage); err != nil {
		return err
	}
	b.mu.Lock()
	img, ok := b.registry[ref]
	b.mu.Unlock()
	if !ok {
		return fmt.Errorf("%w: manifest for %s not found", backend.ErrNotFound, ref)
	}
	if progress != nil {
		progress(1, 1)
	}
	b.AddImage(*img)
	return nil
}

// PushImage implements backend.Images.
func (b *Backend) PushImage(ctx context.Context, ref, _ string, _ backend.Progress) error {
	return b.enter(ctx, "PushImage")
}

// CommitContainer implements backend.Images.
func (b *Backend) CommitContainer(ctx context.Context, containerID, ref string, _ []string) (string, error) {
	if err := b.enter(ctx, "CommitContainer"); err != nil {
		return "", err
	}
	id := "sha256:commit-" + strings.TrimPrefix(containerID, "0")
	b.AddImage(backend.Image{ID: id, Tags: []string{ref}})
	return id, nil
}

// SaveImage implements backend.Images.
func (b *Backend) SaveImage(ctx context.Context, ref string, w io.Writer) error {
	if err := b.enter(ctx, "SaveImage"); err != nil {
		return err
	}
	_, err := io.WriteString(w, "image "+ref)
	return err
}

// RemoveImage implements backend.Images.
func (b *Backend) RemoveImage(ctx context.Context, ref string, _, _ bool) error {
	if err := b.enter(ctx, "RemoveImage"); err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	img, ok := b.images[ref]
	if !ok {
		return fmt.Errorf("%w: image %s", backend.ErrNotFound, ref)
	}
	delete(b.images, ref)
	if ref == img.ID {
		for _, t := range img.Tags {
			delete(b.images, t)
		}
		return nil
	}
	// As Docker's rmi by tag: the tag goes; the image goes with its last
	// tag.
	var tags []string
	for _, t := range img.Tags {
		if t != ref {
			tags = append(tags, t)
		}
	}
	img.Tags = tags
	if len(tags) == 0 {
		delete(b.images, img.ID)
	}
	return nil
}

var (
	_ backend.Backend = (*Backend)(nil)
	_ backend.Images  = (*Backend)(nil)
)
