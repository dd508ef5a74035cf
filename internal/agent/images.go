package agent

import (
	"compress/gzip"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/bai-agent/bai-agent/internal/backend"
	"github.com/bai-agent/bai-agent/internal/bgtask"
	"github.com/bai-agent/bai-agent/internal/config"
	"github.com/bai-agent/bai-agent/internal/event"
	"github.com/bai-agent/bai-agent/internal/image"
	"github.com/bai-agent/bai-agent/internal/kuser"
	"github.com/bai-agent/bai-agent/internal/wire"
)

// ErrUnsupported means the runtime lacks an optional ability.
var ErrUnsupported = errors.New("not supported by this container runtime")

// imageService checks, pulls, commits, pushes, lists and purges images,
// and remembers what it learnt of each image (architecture, own user).
// Pulls and commits run as background tasks.
type imageService struct {
	be       backend.Backend
	cfg      *config.Config
	id       string
	log      *slog.Logger
	events   EventSink
	tasks    *bgtask.Manager
	pullTime time.Duration
	// running finds a running kernel and its spec (commit).
	running func(id string) (*Kernel, *KernelSpec, error)

	pullMu  sync.Mutex
	pulling map[string]string // canonical -> task id

	// imageArch remembers each image id's architecture (image id ->
	// string).
	imageArch sync.Map
	// imageUsers remembers each image id's own user (image id ->
	// [2]int{uid, gid}, kuser.FromPasswd of its /etc/passwd).
	imageUsers sync.Map

	scanMu sync.Mutex
	// scanned is the previous image scan (canonical -> digest); nil
	// before the first.
	scanned map[string]string
}

func newImageService(be backend.Backend, cfg *config.Config, id string, log *slog.Logger, events EventSink, tasks *bgtask.Manager, pullTime time.Duration, running func(string) (*Kernel, *KernelSpec, error)) *imageService {
	return &imageService{be: be, cfg: cfg, id: id, log: log, events: events, tasks: tasks, pullTime: pullTime, running: running, pulling: map[string]string{}}
}

func (s *imageService) images() (backend.Images, error) {
	im, ok := s.be.(backend.Images)
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
func (s *imageService) checkImage(ctx context.Context, ref wire.ImageRef, digest, policy string) (local *backend.Image, need bool, err error) {
	name := image.DockerName(ref)
	local, err = s.be.InspectImage(ctx, name)
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
func (s *imageService) pullImage(ctx context.Context, ref wire.ImageRef, reg RegistryInfo, progress func(cur, total int64)) error {
	im, err := s.images()
	if err != nil {
		return err
	}
	name := image.DockerName(ref)
	pctx, cancel := context.WithTimeout(ctx, s.pullTime)
	defer cancel()
	err = im.PullImage(pctx, name, registryAuth(reg), progress)
	if err != nil && errors.Is(pctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("%w: pull of %s timed out after %s (api.pull-timeout): %v", ErrPullTimeout, name, s.pullTime, err)
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
func (s *imageService) CheckAndPull(ctx context.Context, configs map[string]ImageConfig) (map[string]string, error) {
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
		s.pullMu.Lock()
		if id, ok := s.pulling[canonical]; ok {
			s.pullMu.Unlock()
			out[name] = bgtask.Hex(id)
			continue
		}
		id := s.tasks.Start("check_and_pull "+canonical, func(tctx context.Context, r bgtask.Reporter) (string, error) {
			defer func() {
				s.pullMu.Lock()
				delete(s.pulling, canonical)
				s.pullMu.Unlock()
			}()
			return s.checkAndPullOne(tctx, ic, ref, r)
		})
		s.pulling[canonical] = id
		s.pullMu.Unlock()
		out[name] = bgtask.Hex(id)
	}
	return out, nil
}

func (s *imageService) checkAndPullOne(ctx context.Context, ic ImageConfig, ref wire.ImageRef, r bgtask.Reporter) (string, error) {
	canonical := ref.Canonical()
	evRef := event.RefOf(ref)
	failed := func(err error) (string, error) {
		s.events.Publish(context.WithoutCancel(ctx), event.ImagePullFailed{Image: canonical, AgentID: s.id, Msg: err.Error(), ImageRef: evRef})
		return "", err
	}
	_, need, err := s.checkImage(ctx, ref, ic.Digest, ic.AutoPull)
	if err != nil {
		return failed(err)
	}
	if !need {
		r.Update(1, 1, event.MsgImageAlreadyExists)
		s.events.Publish(ctx, event.ImagePullFinished{Image: canonical, AgentID: s.id, Timestamp: nowTimestamp(), Msg: event.StrPtr(event.MsgImageAlreadyExists), ImageRef: evRef})
		return event.MsgImageAlreadyExists, nil
	}
	s.events.Publish(ctx, event.ImagePullStarted{Image: canonical, AgentID: s.id, Timestamp: nowTimestamp(), ImageRef: evRef})
	var lastTotal int64
	err = s.pullImage(ctx, ref, ic.Registry, func(cur, total int64) {
		lastTotal = total
		r.Update(cur, total, "pulling "+canonical)
	})
	if err != nil {
		return failed(err)
	}
	r.Update(lastTotal, lastTotal, "pulled "+canonical)
	s.events.Publish(ctx, event.ImagePullFinished{Image: canonical, AgentID: s.id, Timestamp: nowTimestamp(), ImageRef: evRef})
	return "pulled " + canonical, nil
}

// IsPulling reports whether an image is being pulled (check_pulling).
func (s *imageService) IsPulling(name string) bool {
	s.pullMu.Lock()
	defer s.pullMu.Unlock()
	_, ok := s.pulling[name]
	return ok
}

// Task returns a background task's state.
func (s *imageService) Task(id string) (bgtask.Task, bool) { return s.tasks.Get(id) }

func safeName(kind, s string) error {
	if s == "" || s == "." || s == ".." || strings.ContainsAny(s, "/\\\x00") {
		return fmt.Errorf("%w: %s %q must be a plain name", ErrPermission, kind, s)
	}
	return nil
}

// CommittingKernels lists the kernels with a commit lock file
// ({image-commit-path}/*/lock/{kernel id}), as upstream's
// report_all_kernel_commit_status_map scans them.
func (s *imageService) CommittingKernels() []string {
	locks, _ := filepath.Glob(filepath.Join(s.cfg.Agent.ImageCommitPath, "*", "lock", "*"))
	out := make([]string, 0, len(locks))
	for _, l := range locks {
		out = append(out, filepath.Base(l))
	}
	return out
}

func (s *imageService) commitLock(subdir, kernelID string) string {
	return filepath.Join(s.cfg.Agent.ImageCommitPath, subdir, "lock", kernelID)
}

// Commit snapshots a kernel's container as an image (docker commit with
// LABEL changes and an optional repo:tag); with filename it exports the
// image gzipped to {image-commit-path}/{subdir}/{filename} and deletes it.
// A lock file marks the ongoing commit.
func (s *imageService) Commit(ctx context.Context, kernelID, subdir, canonical, filename string, extraLabels map[string]string) (map[string]any, error) {
	im, err := s.images()
	if err != nil {
		return nil, err
	}
	_, ks, err := s.running(kernelID)
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
	lock := s.commitLock(subdir, kernelID)
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
	cid := ks.ContainerID
	taskID := s.tasks.Start("commit "+kernelID, func(tctx context.Context, r bgtask.Reporter) (string, error) {
		defer os.Remove(lock)
		tctx, cancel := withSeconds(tctx, s.cfg.API.CommitTimeout)
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
		dst := filepath.Join(s.cfg.Agent.ImageCommitPath, subdir, filename)
		if err := exportGzip(tctx, im, ref, dst); err != nil {
			_ = im.RemoveImage(context.WithoutCancel(tctx), ref, true, false)
			return "", err
		}
		if err := im.RemoveImage(tctx, ref, true, false); err != nil {
			s.log.Warn("remove exported commit image", "image", ref, "error", err)
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
func (s *imageService) CommitStatus(kernelID, subdir string) (map[string]any, error) {
	if err := safeName("subdir", subdir); err != nil {
		return nil, err
	}
	status := "ready"
	if _, err := os.Stat(s.commitLock(subdir, kernelID)); err == nil {
		status = "ongoing"
	}
	return map[string]any{"kernel": kernelID, "status": status}, nil
}

// PushImage pushes an image to a registry in the background.
// A local image (isLocal) has no registry: the task succeeds at once, as
// the Python agent's push_image returns for one.
func (s *imageService) PushImage(ctx context.Context, canonical string, isLocal bool, reg RegistryInfo) (string, error) {
	im, err := s.images()
	if err != nil {
		return "", err
	}
	return s.tasks.Start("push "+canonical, func(tctx context.Context, r bgtask.Reporter) (string, error) {
		if isLocal {
			return "local image, nothing to push", nil
		}
		tctx, cancel := withSeconds(tctx, s.cfg.API.PushTimeout)
		defer cancel()
		if err := im.PushImage(tctx, canonical, registryAuth(reg), func(cur, total int64) { r.Update(cur, total, "pushing "+canonical) }); err != nil {
			return "", err
		}
		return "pushed " + canonical, nil
	}), nil
}

// PurgeImages removes images and reports each outcome.
func (s *imageService) PurgeImages(ctx context.Context, names []string, force, noPrune bool) ([]map[string]any, error) {
	im, err := s.images()
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
			if _, err := s.be.InspectImage(ctx, n); errors.Is(err, backend.ErrNotFound) {
				target = rest
			}
		}
		if err := im.RemoveImage(ctx, target, force, noPrune); err != nil {
			e = err.Error()
		}
		out = append(out, map[string]any{"image": n, "error": e})
	}
	// The manager hears of the images that went away now, not at the
	// next periodic scan (none runs without a control plane).
	s.scanMu.Lock()
	scanning := s.scanned != nil
	s.scanMu.Unlock()
	if scanning {
		if _, err := s.Images(ctx); err != nil {
			s.log.Warn("image scan after a purge", "error", err)
		}
	}
	return out, nil
}

// ListImages returns the local images that are Backend.AI kernel images.
func (s *imageService) ListImages(ctx context.Context) ([]backend.Image, error) {
	im, err := s.images()
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

// Images lists the kernel images on the node for installed_image:{id}
// as upstream's scan_images does: every tag as Docker knows it (a local
// image is reported by its short name), kernelspec 1-1, with the image's
// own architecture (inspected once per image id and remembered).
func (s *imageService) Images(ctx context.Context) ([]map[string]any, error) {
	imgs, err := s.ListImages(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]map[string]any, 0, len(imgs))
	for _, i := range imgs {
		if ks := i.Labels["ai.backend.kernelspec"]; ks != "" && ks != "1" {
			continue
		}
		arch, ok := s.imageArch.Load(i.ID)
		if !ok {
			full, err := s.be.InspectImage(ctx, i.ID)
			if err != nil {
				continue // removed meanwhile; the next pass sees the truth
			}
			arch = image.NormalizeArch(full.Architecture)
			if arch == "" {
				arch = "x86_64"
			}
			s.imageArch.Store(i.ID, arch)
		}
		for _, t := range i.Tags {
			if strings.HasSuffix(t, "<none>") {
				continue
			}
			out = append(out, map[string]any{"canonical": t, "digest": i.ID, "architecture": arch})
		}
	}
	s.noteScan(ctx, out)
	return out, nil
}

// noteScan compares a scan with the previous one and tells the manager
// which images went away (a purge, a `docker rmi` by an operator), as
// upstream's periodic scan does with agent_installed_images_remove: its
// image table then stops sending sessions of those images here.
func (s *imageService) noteScan(ctx context.Context, imgs []map[string]any) {
	now := make(map[string]string, len(imgs))
	for _, m := range imgs {
		c, _ := m["canonical"].(string)
		d, _ := m["digest"].(string)
		now[c] = d
	}
	s.scanMu.Lock()
	prev := s.scanned
	s.scanned = now
	s.scanMu.Unlock()
	removed := map[string]event.ScannedImage{}
	for c, d := range prev {
		if _, ok := now[c]; !ok {
			removed[c] = event.ScannedImage{Canonical: c, Digest: d}
		}
	}
	if len(removed) == 0 {
		return
	}
	names := make([]string, 0, len(removed))
	for c := range removed {
		names = append(names, c)
	}
	sort.Strings(names)
	s.log.Info("kernel images removed from this node", "images", names)
	s.events.Publish(ctx, event.AgentInstalledImagesRemove{ScannedImages: removed})
}

// imageUser is the image's own unprivileged user (kuser.FromPasswd of its
// /etc/passwd), remembered per image id; 1000:1000 when the image has no
// readable passwd.
func (s *imageService) imageUser(ctx context.Context, img *backend.Image) [2]int {
	if img == nil {
		return [2]int{kuser.Default, kuser.Default}
	}
	if v, ok := s.imageUsers.Load(img.ID); ok {
		return v.([2]int)
	}
	b, err := s.be.ReadImageFile(ctx, img.ID, "/etc/passwd", kuser.PasswdLimit)
	if err != nil && !errors.Is(err, backend.ErrNotFound) {
		// Not remembered: the next creation asks again.
		s.log.Warn("image's /etc/passwd unreadable; its kernel user is 1000", "image", img.ID, "error", err)
		return [2]int{kuser.Default, kuser.Default}
	}
	u, g := kuser.FromPasswd(b)
	s.imageUsers.Store(img.ID, [2]int{u, g})
	return [2]int{u, g}
}
