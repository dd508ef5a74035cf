package agent

import (
	"compress/gzip"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/bai-agent/bai-agent/internal/backend"
	"github.com/bai-agent/bai-agent/internal/bgtask"
	"github.com/bai-agent/bai-agent/internal/config"
	"github.com/bai-agent/bai-agent/internal/event"
	"github.com/bai-agent/bai-agent/internal/image"
	"github.com/bai-agent/bai-agent/internal/wire"
)

// ErrUnsupported means the runtime lacks an optional ability.
var ErrUnsupported = errors.New("not supported by this container runtime")

func (a *Agent) images() (backend.Images, error) {
	im, ok := a.be.(backend.Images)
	if !ok {
		return nil, fmt.Errorf("images: %w", ErrUnsupported)
	}
	return im, nil
}

// registryAuth builds Docker's X-Registry-Auth value.
func registryAuth(r RegistryInfo) string {
	if r.Username == "" && r.Password == "" {
		return ""
	}
	js, _ := json.Marshal(map[string]string{"username": r.Username, "password": r.Password, "serveraddress": strings.TrimPrefix(strings.TrimPrefix(r.URL, "https://"), "http://")})
	return base64.URLEncoding.EncodeToString(js)
}

// withSeconds bounds ctx by an [api] timeout in seconds (0: no bound).
func withSeconds(ctx context.Context, secs config.Duration) (context.Context, context.CancelFunc) {
	if secs <= 0 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, time.Duration(float64(secs)*float64(time.Second)))
}

// Auto-pull policies (AutoPullBehavior).
const (
	AutoPullDigest = "digest"
	AutoPullTag    = "tag"
	AutoPullNone   = "none"
)

// ValidateAutoPull checks an auto_pull value ("" means digest).
func ValidateAutoPull(v string) error {
	switch v {
	case "", AutoPullDigest, AutoPullTag, AutoPullNone:
		return nil
	}
	return fmt.Errorf("%w: unknown auto_pull %q (one of digest, tag, none)", ErrInvalidArgument, v)
}

// ImageRefOf builds the manager's ImageRef from an ImageConfig (as
// ImageRef.from_image_config does); a malformed one is ErrInvalidArgument.
func ImageRefOf(ic ImageConfig) (wire.ImageRef, error) {
	ref, err := image.ParseRef(ic.Canonical, ic.Project, ic.Registry.Name, ic.Architecture, ic.IsLocal)
	if err != nil {
		return ref, fmt.Errorf("%w: %v", ErrInvalidArgument, err)
	}
	return ref, nil
}

// checkImage looks the image up under the name Docker knows it by and
// applies the auto_pull policy: digest pulls unless the local id equals the
// digest, tag pulls only when missing, none never pulls. A local image
// (is_local) has no registry to pull from: present means usable, absent
// is ErrImageNotAvailable.
func (a *Agent) checkImage(ctx context.Context, ref wire.ImageRef, digest, policy string) (local *backend.Image, need bool, err error) {
	name := image.DockerName(ref)
	local, err = a.be.InspectImage(ctx, name)
	switch {
	case errors.Is(err, backend.ErrNotFound):
		local = nil
	case err != nil:
		return nil, false, fmt.Errorf("inspect image %s: %w", name, err)
	}
	if ref.IsLocal {
		if local == nil {
			return nil, false, fmt.Errorf("%w: local image %s is not on this node (local images cannot be pulled)", ErrImageNotAvailable, name)
		}
		return local, false, nil
	}
	switch policy {
	case AutoPullNone:
		if local == nil {
			return nil, false, fmt.Errorf("%w: %s is not present and auto_pull is none", ErrImageNotAvailable, name)
		}
		return local, false, nil
	case AutoPullTag:
		return local, local == nil, nil
	default: // digest
		return local, local == nil || (digest != "" && local.ID != digest), nil
	}
}

// pullImage pulls a (non-local) image under the pull timeout.
func (a *Agent) pullImage(ctx context.Context, ref wire.ImageRef, reg RegistryInfo, progress func(cur, total int64)) error {
	im, err := a.images()
	if err != nil {
		return err
	}
	name := image.DockerName(ref)
	pctx, cancel := context.WithTimeout(ctx, a.pullTime)
	defer cancel()
	err = im.PullImage(pctx, name, registryAuth(reg), progress)
	if err != nil && errors.Is(pctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("%w: pull of %s timed out after %s (api.pull-timeout): %v", ErrPullTimeout, name, a.pullTime, err)
	}
	if err != nil {
		return fmt.Errorf("pull %s: %w", name, err)
	}
	return nil
}

func nowTimestamp() float64 { return float64(time.Now().UnixNano()) / 1e9 }

// CheckAndPull starts one background task per image that checks it and
// pulls it when the policy says so, publishing image_pull_started and
// image_pull_finished/failed as the Python agent does (finished with
// "Image already exists" when nothing is pulled: the manager moves
// kernels to PREPARED only on that event). Concurrent requests for the
// same canonical name share one task. Malformed configs are refused
// before any task starts. It returns {name: task id as 32 hex digits}.
func (a *Agent) CheckAndPull(ctx context.Context, configs map[string]ImageConfig) (map[string]string, error) {
	names := make([]string, 0, len(configs))
	refs := map[string]wire.ImageRef{}
	for n, ic := range configs {
		names = append(names, n)
		if ic.Canonical == "" {
			ic.Canonical = n
			configs[n] = ic
		}
		ref, err := ImageRefOf(ic)
		if err != nil {
			return nil, fmt.Errorf("image_configs[%q]: %w", n, err)
		}
		if err := ValidateAutoPull(ic.AutoPull); err != nil {
			return nil, fmt.Errorf("image_configs[%q]: %w", n, err)
		}
		refs[n] = ref
	}
	sort.Strings(names)
	out := map[string]string{}
	for _, name := range names {
		ic, ref := configs[name], refs[name]
		canonical := ref.Canonical()
		a.pullMu.Lock()
		if id, ok := a.pulling[canonical]; ok {
			a.pullMu.Unlock()
			out[name] = bgtask.Hex(id)
			continue
		}
		id := a.tasks.Start("check_and_pull "+canonical, func(tctx context.Context, r bgtask.Reporter) (string, error) {
			defer func() {
				a.pullMu.Lock()
				delete(a.pulling, canonical)
				a.pullMu.Unlock()
			}()
			return a.checkAndPullOne(tctx, ic, ref, r)
		})
		a.pulling[canonical] = id
		a.pullMu.Unlock()
		out[name] = bgtask.Hex(id)
	}
	return out, nil
}

func (a *Agent) checkAndPullOne(ctx context.Context, ic ImageConfig, ref wire.ImageRef, r bgtask.Reporter) (string, error) {
	canonical := ref.Canonical()
	evRef := event.RefOf(ref)
	failed := func(err error) (string, error) {
		a.events.Publish(context.WithoutCancel(ctx), event.ImagePullFailed{Image: canonical, AgentID: a.id, Msg: err.Error(), ImageRef: evRef})
		return "", err
	}
	_, need, err := a.checkImage(ctx, ref, ic.Digest, ic.AutoPull)
	if err != nil {
		return failed(err)
	}
	if !need {
		r.Update(1, 1, event.MsgImageAlreadyExists)
		a.events.Publish(ctx, event.ImagePullFinished{Image: canonical, AgentID: a.id, Timestamp: nowTimestamp(), Msg: event.StrPtr(event.MsgImageAlreadyExists), ImageRef: evRef})
		return event.MsgImageAlreadyExists, nil
	}
	a.events.Publish(ctx, event.ImagePullStarted{Image: canonical, AgentID: a.id, Timestamp: nowTimestamp(), ImageRef: evRef})
	var lastTotal int64
	err = a.pullImage(ctx, ref, ic.Registry, func(cur, total int64) {
		lastTotal = total
		r.Update(cur, total, "pulling "+canonical)
	})
	if err != nil {
		return failed(err)
	}
	r.Update(lastTotal, lastTotal, "pulled "+canonical)
	a.events.Publish(ctx, event.ImagePullFinished{Image: canonical, AgentID: a.id, Timestamp: nowTimestamp(), ImageRef: evRef})
	return "pulled " + canonical, nil
}

// IsPulling reports whether an image is being pulled (check_pulling).
func (a *Agent) IsPulling(name string) bool {
	a.pullMu.Lock()
	defer a.pullMu.Unlock()
	_, ok := a.pulling[name]
	return ok
}

// Task returns a background task's state.
func (a *Agent) Task(id string) (bgtask.Task, bool) { return a.tasks.Get(id) }

func safeName(kind, s string) error {
	if s == "" || s == "." || s == ".." || strings.ContainsAny(s, "/\\\x00") {
		return fmt.Errorf("%w: %s %q must be a plain name", ErrPermission, kind, s)
	}
	return nil
}

// CommittingKernels lists the kernels with a commit lock file
// ({image-commit-path}/*/lock/{kernel id}), as upstream's
// report_all_kernel_commit_status_map scans them.
func (a *Agent) CommittingKernels() []string {
	locks, _ := filepath.Glob(filepath.Join(a.cfg.Agent.ImageCommitPath, "*", "lock", "*"))
	out := make([]string, 0, len(locks))
	for _, l := range locks {
		out = append(out, filepath.Base(l))
	}
	return out
}

func (a *Agent) commitLock(subdir, kernelID string) string {
	return filepath.Join(a.cfg.Agent.ImageCommitPath, subdir, "lock", kernelID)
}

// Commit snapshots a kernel's container as an image (docker commit with
// LABEL changes and an optional repo:tag); with filename it exports the
// image gzipped to {image-commit-path}/{subdir}/{filename} and deletes it.
// A lock file marks the ongoing commit.
func (a *Agent) Commit(ctx context.Context, kernelID, subdir, canonical, filename string, extraLabels map[string]string) (map[string]any, error) {
	im, err := a.images()
	if err != nil {
		return nil, err
	}
	k, err := a.runningKernel(kernelID)
	if err != nil {
		return nil, err
	}
	if err := safeName("subdir", subdir); err != nil {
		return nil, err
	}
	var outPath any
	if filename != "" {
		if err := safeName("filename", filename); err != nil {
			return nil, err
		}
		outPath = subdir + "/" + filename
	}
	lock := a.commitLock(subdir, kernelID)
	if err := os.MkdirAll(filepath.Dir(lock), 0o755); err != nil {
		return nil, fmt.Errorf("image-commit-path: %w", err)
	}
	f, err := os.OpenFile(lock, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		if errors.Is(err, os.ErrExist) {
			return nil, fmt.Errorf("%w: a commit of kernel %s is already in progress", ErrInvalidArgument, kernelID)
		}
		return nil, err
	}
	f.Close()
	keys := make([]string, 0, len(extraLabels))
	for k := range extraLabels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var changes []string
	for _, key := range keys {
		changes = append(changes, fmt.Sprintf("LABEL %s=%q", key, extraLabels[key]))
	}
	cid := k.ContainerID()
	taskID := a.tasks.Start("commit "+kernelID, func(tctx context.Context, r bgtask.Reporter) (string, error) {
		defer os.Remove(lock)
		tctx, cancel := withSeconds(tctx, a.cfg.API.CommitTimeout)
		defer cancel()
		ref := canonical
		if ref == "" && filename != "" {
			ref = "bai-commit-tmp/" + kernelID + ":" + strings.ReplaceAll(uuid.NewString(), "-", "")[:12]
		}
		id, err := im.CommitContainer(tctx, cid, ref, changes)
		if err != nil {
			return "", err
		}
		r.Update(1, 2, "committed "+id)
		if filename == "" {
			r.Update(2, 2, "done")
			return id, nil
		}
		dst := filepath.Join(a.cfg.Agent.ImageCommitPath, subdir, filename)
		if err := exportGzip(tctx, im, ref, dst); err != nil {
			_ = im.RemoveImage(context.WithoutCancel(tctx), ref, true, false)
			return "", err
		}
		if err := im.RemoveImage(tctx, ref, true, false); err != nil {
			a.log.Warn("remove exported commit image", "image", ref, "error", err)
		}
		r.Update(2, 2, "exported "+dst)
		return dst, nil
	})
	// The Python agent answers a UUID with dashes here.
	u, _ := uuid.Parse(taskID)
	return map[string]any{"bgtask_id": u.String(), "kernel": kernelID, "path": outPath}, nil
}

func exportGzip(ctx context.Context, im backend.Images, ref, dst string) error {
	tmp := dst + ".part"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	zw := gzip.NewWriter(f)
	err = im.SaveImage(ctx, ref, zw)
	if cerr := zw.Close(); err == nil {
		err = cerr
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, dst)
}

// CommitStatus says whether a commit of the kernel is ongoing.
func (a *Agent) CommitStatus(kernelID, subdir string) (map[string]any, error) {
	if err := safeName("subdir", subdir); err != nil {
		return nil, err
	}
	status := "ready"
	if _, err := os.Stat(a.commitLock(subdir, kernelID)); err == nil {
		status = "ongoing"
	}
	return map[string]any{"kernel": kernelID, "status": status}, nil
}

// PushImage pushes an image to a registry in the background.
// A local image (isLocal) has no registry: the task succeeds at once, as
// the Python agent's push_image returns for one.
func (a *Agent) PushImage(ctx context.Context, canonical string, isLocal bool, reg RegistryInfo) (string, error) {
	im, err := a.images()
	if err != nil {
		return "", err
	}
	return a.tasks.Start("push "+canonical, func(tctx context.Context, r bgtask.Reporter) (string, error) {
		if isLocal {
			return "local image, nothing to push", nil
		}
		tctx, cancel := withSeconds(tctx, a.cfg.API.PushTimeout)
		defer cancel()
		if err := im.PushImage(tctx, canonical, registryAuth(reg), func(cur, total int64) { r.Update(cur, total, "pushing "+canonical) }); err != nil {
			return "", err
		}
		return "pushed " + canonical, nil
	}), nil
}

// PurgeImages removes images and reports each outcome.
func (a *Agent) PurgeImages(ctx context.Context, names []string, force, noPrune bool) ([]map[string]any, error) {
	im, err := a.images()
	if err != nil {
		return nil, err
	}
	out := make([]map[string]any, 0, len(names))
	for _, n := range names {
		var e any
		target := n
		// The manager names a local image local/project/name:tag; Docker
		// knows it as project/name:tag.
		if rest, ok := strings.CutPrefix(n, "local/"); ok {
			if _, err := a.be.InspectImage(ctx, n); errors.Is(err, backend.ErrNotFound) {
				target = rest
			}
		}
		if err := im.RemoveImage(ctx, target, force, noPrune); err != nil {
			e = err.Error()
		}
		out = append(out, map[string]any{"image": n, "error": e})
	}
	return out, nil
}

// ListImages returns the local images that are Backend.AI kernel images.
func (a *Agent) ListImages(ctx context.Context) ([]backend.Image, error) {
	im, err := a.images()
	if err != nil {
		return nil, err
	}
	all, err := im.ListImages(ctx)
	if err != nil {
		return nil, err
	}
	var out []backend.Image
	for _, i := range all {
		if _, ok := i.Labels["ai.backend.kernelspec"]; ok {
			out = append(out, i)
		}
	}
	return out, nil
}
