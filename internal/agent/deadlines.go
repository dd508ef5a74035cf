package agent

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/bai-agent/bai-agent/internal/backend"
)

// Timeouts bound each kind of container-runtime call, so that a runtime
// that stops answering fails the operation at hand instead of holding it
// (and the kernel's owner, which handles one message at a time) forever. Image pulls, pushes and
// commits are bounded by [api] pull-timeout, push-timeout and
// commit-timeout instead, and a container's start by [kernel-lifecycles]
// init-timeout-sec, as in Backend.AI.
type Timeouts struct {
	Inspect time.Duration // inspect a container or an image
	Create  time.Duration // create a container
	Start   time.Duration // start a container (create also bounds it by init-timeout-sec)
	Stop    time.Duration // on top of the stop signal's grace period
	Remove  time.Duration // remove a container
	List    time.Duration // list containers or images
	Logs    time.Duration // read a container's logs
	Ping    time.Duration // ping the runtime
	Network time.Duration // create or remove a network
	Image   time.Duration // remove an image
}

// DefaultTimeouts are generous for a busy dockerd and short enough that a
// hung one is noticed within a minute or two.
func DefaultTimeouts() Timeouts {
	return Timeouts{
		Inspect: 30 * time.Second, Create: 60 * time.Second, Start: 60 * time.Second, Stop: 30 * time.Second,
		Remove: 60 * time.Second, List: 30 * time.Second, Logs: 60 * time.Second, Ping: 10 * time.Second,
		Network: 30 * time.Second, Image: 60 * time.Second,
	}
}

// withDefaults fills zero fields from DefaultTimeouts.
func (t Timeouts) withDefaults() Timeouts {
	d := DefaultTimeouts()
	for _, f := range []struct {
		dst *time.Duration
		def time.Duration
	}{
		{&t.Inspect, d.Inspect}, {&t.Create, d.Create}, {&t.Start, d.Start}, {&t.Stop, d.Stop}, {&t.Remove, d.Remove},
		{&t.List, d.List}, {&t.Logs, d.Logs}, {&t.Ping, d.Ping}, {&t.Network, d.Network}, {&t.Image, d.Image},
	} {
		if *f.dst == 0 {
			*f.dst = f.def
		}
	}
	return t
}

// timedBackend gives every call of a runtime its deadline. It always
// offers Images and Networks; they answer ErrUnsupported when the
// runtime lacks them.
type timedBackend struct {
	inner backend.Backend
	t     Timeouts
}

func within(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if d <= 0 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, d)
}

// timeoutErr names the call that ran out of time.
func timeoutErr(ctx context.Context, call string, d time.Duration, err error) error {
	if err != nil && ctx.Err() == context.DeadlineExceeded {
		return fmt.Errorf("container runtime %s did not answer within %s: %w", call, d, err)
	}
	return err
}

func (b *timedBackend) Create(ctx context.Context, spec *backend.ContainerSpec) (string, error) {
	ctx, cancel := within(ctx, b.t.Create)
	defer cancel()
	id, err := b.inner.Create(ctx, spec)
	return id, timeoutErr(ctx, "create", b.t.Create, err)
}

func (b *timedBackend) Start(ctx context.Context, id string) error {
	ctx, cancel := within(ctx, b.t.Start)
	defer cancel()
	return timeoutErr(ctx, "start", b.t.Start, b.inner.Start(ctx, id))
}

func (b *timedBackend) Stop(ctx context.Context, id string, timeout time.Duration) error {
	ctx, cancel := within(ctx, timeout+b.t.Stop)
	defer cancel()
	return timeoutErr(ctx, "stop", timeout+b.t.Stop, b.inner.Stop(ctx, id, timeout))
}

func (b *timedBackend) Remove(ctx context.Context, id string) error {
	ctx, cancel := within(ctx, b.t.Remove)
	defer cancel()
	return timeoutErr(ctx, "remove", b.t.Remove, b.inner.Remove(ctx, id))
}

func (b *timedBackend) Inspect(ctx context.Context, id string) (*backend.Container, error) {
	ctx, cancel := within(ctx, b.t.Inspect)
	defer cancel()
	c, err := b.inner.Inspect(ctx, id)
	return c, timeoutErr(ctx, "inspect", b.t.Inspect, err)
}

func (b *timedBackend) List(ctx context.Context, labels map[string]string) ([]backend.Container, error) {
	ctx, cancel := within(ctx, b.t.List)
	defer cancel()
	l, err := b.inner.List(ctx, labels)
	return l, timeoutErr(ctx, "list", b.t.List, err)
}

// Events is a stream: it lives as long as ctx.
func (b *timedBackend) Events(ctx context.Context) (<-chan backend.Event, <-chan error) {
	return b.inner.Events(ctx)
}

func (b *timedBackend) InspectImage(ctx context.Context, ref string) (*backend.Image, error) {
	ctx, cancel := within(ctx, b.t.Inspect)
	defer cancel()
	i, err := b.inner.InspectImage(ctx, ref)
	return i, timeoutErr(ctx, "image inspect", b.t.Inspect, err)
}

func (b *timedBackend) ReadImageFile(ctx context.Context, ref, path string, limit int64) ([]byte, error) {
	// A create, a copy and a remove: bounded like a container creation.
	ctx, cancel := within(ctx, b.t.Create)
	defer cancel()
	d, err := b.inner.ReadImageFile(ctx, ref, path, limit)
	return d, timeoutErr(ctx, "read image file", b.t.Create, err)
}

func (b *timedBackend) Logs(ctx context.Context, id string, tty bool, limit int64) ([]byte, error) {
	ctx, cancel := within(ctx, b.t.Logs)
	defer cancel()
	l, err := b.inner.Logs(ctx, id, tty, limit)
	return l, timeoutErr(ctx, "logs", b.t.Logs, err)
}

func (b *timedBackend) Ping(ctx context.Context) (string, error) {
	ctx, cancel := within(ctx, b.t.Ping)
	defer cancel()
	v, err := b.inner.Ping(ctx)
	return v, timeoutErr(ctx, "ping", b.t.Ping, err)
}

func (b *timedBackend) imgs() (backend.Images, error) {
	im, ok := b.inner.(backend.Images)
	if !ok {
		return nil, fmt.Errorf("images: %w", ErrUnsupported)
	}
	return im, nil
}

func (b *timedBackend) ListImages(ctx context.Context) ([]backend.Image, error) {
	im, err := b.imgs()
	if err != nil {
		return nil, err
	}
	ctx, cancel := within(ctx, b.t.List)
	defer cancel()
	l, err := im.ListImages(ctx)
	return l, timeoutErr(ctx, "image list", b.t.List, err)
}

// PullImage, PushImage, CommitContainer and SaveImage are bounded by the
// caller ([api] timeouts).
func (b *timedBackend) PullImage(ctx context.Context, ref, auth string, p backend.Progress) error {
	im, err := b.imgs()
	if err != nil {
		return err
	}
	return im.PullImage(ctx, ref, auth, p)
}

func (b *timedBackend) PushImage(ctx context.Context, ref, auth string, p backend.Progress) error {
	im, err := b.imgs()
	if err != nil {
		return err
	}
	return im.PushImage(ctx, ref, auth, p)
}

func (b *timedBackend) CommitContainer(ctx context.Context, containerID, ref string, changes []string) (string, error) {
	im, err := b.imgs()
	if err != nil {
		return "", err
	}
	return im.CommitContainer(ctx, containerID, ref, changes)
}

func (b *timedBackend) SaveImage(ctx context.Context, ref string, w io.Writer) error {
	im, err := b.imgs()
	if err != nil {
		return err
	}
	return im.SaveImage(ctx, ref, w)
}

func (b *timedBackend) RemoveImage(ctx context.Context, ref string, force, noPrune bool) error {
	im, err := b.imgs()
	if err != nil {
		return err
	}
	ctx, cancel := within(ctx, b.t.Image)
	defer cancel()
	return timeoutErr(ctx, "image remove", b.t.Image, im.RemoveImage(ctx, ref, force, noPrune))
}

func (b *timedBackend) CreateNetwork(ctx context.Context, name string, labels map[string]string) error {
	nw, ok := b.inner.(backend.Networks)
	if !ok {
		return fmt.Errorf("networks: %w", ErrUnsupported)
	}
	ctx, cancel := within(ctx, b.t.Network)
	defer cancel()
	return timeoutErr(ctx, "network create", b.t.Network, nw.CreateNetwork(ctx, name, labels))
}

func (b *timedBackend) RemoveNetwork(ctx context.Context, name string) error {
	nw, ok := b.inner.(backend.Networks)
	if !ok {
		return fmt.Errorf("networks: %w", ErrUnsupported)
	}
	ctx, cancel := within(ctx, b.t.Network)
	defer cancel()
	return timeoutErr(ctx, "network remove", b.t.Network, nw.RemoveNetwork(ctx, name))
}

func (b *timedBackend) ListNetworks(ctx context.Context, labels map[string]string) ([]backend.Network, error) {
	nw, ok := b.inner.(backend.Networks)
	if !ok {
		return nil, fmt.Errorf("networks: %w", ErrUnsupported)
	}
	ctx, cancel := within(ctx, b.t.Network)
	defer cancel()
	out, err := nw.ListNetworks(ctx, labels)
	return out, timeoutErr(ctx, "network list", b.t.Network, err)
}

func (b *timedBackend) InspectNetwork(ctx context.Context, name string) (*backend.Network, error) {
	nw, ok := b.inner.(backend.Networks)
	if !ok {
		return nil, fmt.Errorf("networks: %w", ErrUnsupported)
	}
	ctx, cancel := within(ctx, b.t.Network)
	defer cancel()
	out, err := nw.InspectNetwork(ctx, name)
	return out, timeoutErr(ctx, "network inspect", b.t.Network, err)
}

var (
	_ backend.Backend  = (*timedBackend)(nil)
	_ backend.Images   = (*timedBackend)(nil)
	_ backend.Networks = (*timedBackend)(nil)
)
