package agent

// Image RPCs on the fake runtime: commit (to an image and exported to a
// file), commit status, push, purge, the image list of the heartbeat, and
// check_and_pull's refusals and failures.

import (
	"compress/gzip"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bai-agent/bai-agent/internal/backend"
	"github.com/bai-agent/bai-agent/internal/backend/fake"
	"github.com/bai-agent/bai-agent/internal/bgtask"
	"github.com/bai-agent/bai-agent/internal/config"
)

// unitWaitTask waits for a background task of the agent to end.
func unitWaitTask(t *testing.T, a *Agent, id string) bgtask.Task {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	task, err := a.tasks.Wait(ctx, id)
	if err != nil {
		t.Fatalf("task %s: %v", id, err)
	}
	return task
}

func TestCommitToImage_Fake(t *testing.T) {
	t.Parallel()
	c := newCore(t, nil, nil)
	info, err := c.create(nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	res, err := c.agent.Commit(ctx, info.ID, "user1", "bai/committed:1", "", map[string]string{"b": "2", "a": "x y"})
	if err != nil {
		t.Fatal(err)
	}
	if res["kernel"] != info.ID || res["path"] != nil {
		t.Fatalf("commit answer %v", res)
	}
	id, _ := res["bgtask_id"].(string)
	if len(id) != 36 || strings.Count(id, "-") != 4 {
		t.Fatalf("bgtask_id %q is not a dashed UUID", id)
	}
	task := unitWaitTask(t, c.agent, id)
	if task.Status != bgtask.Done || !strings.HasPrefix(task.Message, "sha256:commit-") {
		t.Fatalf("commit task %+v", task)
	}
	if _, err := c.be.InspectImage(ctx, "bai/committed:1"); err != nil {
		t.Fatalf("the committed image is not there: %v", err)
	}
	if c.be.CallCount("CommitContainer") != 1 {
		t.Fatalf("CommitContainer called %d times", c.be.CallCount("CommitContainer"))
	}
	st, err := c.agent.CommitStatus(info.ID, "user1")
	if err != nil || st["status"] != "ready" || st["kernel"] != info.ID {
		t.Fatalf("commit status after the commit: %v %v", st, err)
	}
	if ks := c.agent.CommittingKernels(); len(ks) != 0 {
		t.Fatalf("committing kernels after the commit: %v", ks)
	}
}

// With a filename the image is exported gzipped into image-commit-path
// and removed from the runtime.
func TestCommitExport_Fake(t *testing.T) {
	t.Parallel()
	c := newCore(t, nil, nil)
	info, err := c.create(nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := c.agent.Commit(context.Background(), info.ID, "user1", "", "snap.tar.gz", nil)
	if err != nil {
		t.Fatal(err)
	}
	if res["path"] != "user1/snap.tar.gz" {
		t.Fatalf("commit answer %v", res)
	}
	task := unitWaitTask(t, c.agent, res["bgtask_id"].(string))
	dst := filepath.Join(c.cfg.Agent.ImageCommitPath, "user1", "snap.tar.gz")
	if task.Status != bgtask.Done || task.Message != dst {
		t.Fatalf("export task %+v", task)
	}
	f, err := os.Open(dst)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(zr)
	if err != nil || !strings.HasPrefix(string(body), "image bai-commit-tmp/"+info.ID+":") {
		t.Fatalf("exported archive %q %v", body, err)
	}
	if _, err := os.Stat(dst + ".part"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("partial file left: %v", err)
	}
	// The temporary image was removed again (by the tag it was committed
	// under).
	ref := strings.TrimPrefix(string(body), "image ")
	if _, err := c.be.InspectImage(context.Background(), ref); !errors.Is(err, backend.ErrNotFound) || c.be.CallCount("RemoveImage") != 1 {
		t.Fatalf("the exported image %s is still there: %v", ref, err)
	}
}

// A failed export leaves no partial file and removes the image.
func TestCommitExportFails_Fake(t *testing.T) {
	t.Parallel()
	c := newCore(t, nil, nil)
	info, err := c.create(nil)
	if err != nil {
		t.Fatal(err)
	}
	c.be.Inject("SaveImage", &fake.Fault{Err: errors.New("disk full")})
	res, err := c.agent.Commit(context.Background(), info.ID, "u", "", "out.tgz", nil)
	if err != nil {
		t.Fatal(err)
	}
	task := unitWaitTask(t, c.agent, res["bgtask_id"].(string))
	if task.Status != bgtask.Failed || !strings.Contains(task.Message, "disk full") {
		t.Fatalf("task %+v", task)
	}
	ents, _ := os.ReadDir(filepath.Join(c.cfg.Agent.ImageCommitPath, "u"))
	for _, e := range ents {
		if e.Name() != "lock" {
			t.Errorf("left in the commit folder: %s", e.Name())
		}
	}
	if c.be.CallCount("RemoveImage") != 1 {
		t.Fatal("the image of a failed export was not removed")
	}
	// A failed background task is an agent error too.
	waitFor(t, 5*time.Second, "agent_error", func() bool { return c.events.has("agent_error") })
	if !c.events.has("bgtask_failed") {
		t.Fatal("no bgtask_failed")
	}
}

// While a commit runs its lock marks it: the status is ongoing, the
// kernel is listed, and a second commit is refused.
func TestCommitInProgress_Fake(t *testing.T) {
	t.Parallel()
	c := newCore(t, func(cfg *config.Config) { cfg.API.CommitTimeout = config.Duration(2) }, nil)
	info, err := c.create(nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	c.be.Inject("CommitContainer", &fake.Fault{Hang: true, Times: 1})
	res, err := c.agent.Commit(ctx, info.ID, "s", "bai/x:1", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if st, _ := c.agent.CommitStatus(info.ID, "s"); st["status"] != "ongoing" {
		t.Fatalf("status during the commit: %v", st)
	}
	if ks := c.agent.CommittingKernels(); len(ks) != 1 || ks[0] != info.ID {
		t.Fatalf("committing kernels %v", ks)
	}
	if _, err := c.agent.Commit(ctx, info.ID, "s", "bai/x:2", "", nil); !errors.Is(err, ErrInvalidArgument) || !strings.Contains(err.Error(), "already in progress") {
		t.Fatalf("second commit: %v", err)
	}
	// The commit timeout ends the hanging commit; the lock goes.
	task := unitWaitTask(t, c.agent, res["bgtask_id"].(string))
	if task.Status != bgtask.Failed || !strings.Contains(task.Message, "deadline") {
		t.Fatalf("task %+v", task)
	}
	if st, _ := c.agent.CommitStatus(info.ID, "s"); st["status"] != "ready" {
		t.Fatalf("status after the commit: %v", st)
	}
}

func TestCommitRefusals_Fake(t *testing.T) {
	t.Parallel()
	c := newCore(t, nil, nil)
	info, err := c.create(nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, tc := range []struct {
		name                         string
		kernel, subdir, file, reason string
		want                         error
	}{
		{"unknown kernel", "nope", "s", "", "nope", ErrKernelNotFound},
		{"subdir with a slash", info.ID, "../etc", "", "plain name", ErrPermission},
		{"empty subdir", info.ID, "", "", "plain name", ErrPermission},
		{"dot subdir", info.ID, "..", "", "plain name", ErrPermission},
		{"filename with a slash", info.ID, "s", "a/b", "plain name", ErrPermission},
		{"filename with a backslash", info.ID, "s", `a\b`, "plain name", ErrPermission},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.agent.Commit(ctx, tc.kernel, tc.subdir, "", tc.file, nil)
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.reason) {
				t.Fatalf("error %v, want %v", err, tc.want)
			}
		})
	}
	if _, err := c.agent.CommitStatus(info.ID, "a/b"); !errors.Is(err, ErrPermission) {
		t.Fatalf("commit status with a bad subdir: %v", err)
	}
	if c.be.CallCount("CommitContainer") != 0 {
		t.Fatal("a refused commit reached the runtime")
	}
}

func TestPushImage_Fake(t *testing.T) {
	t.Parallel()
	c := newCore(t, nil, nil)
	ctx := context.Background()
	id, err := c.agent.PushImage(ctx, "reg.example/bai/x:1", false, RegistryInfo{URL: "https://reg.example", Username: "u", Password: "p"})
	if err != nil {
		t.Fatal(err)
	}
	if task := unitWaitTask(t, c.agent, id); task.Status != bgtask.Done || task.Message != "pushed reg.example/bai/x:1" {
		t.Fatalf("push task %+v", task)
	}
	if c.be.CallCount("PushImage") != 1 {
		t.Fatal("nothing pushed")
	}
	id, _ = c.agent.PushImage(ctx, "bai/local:1", true, RegistryInfo{})
	if task := unitWaitTask(t, c.agent, id); task.Status != bgtask.Done || !strings.Contains(task.Message, "local image") {
		t.Fatalf("push of a local image %+v", task)
	}
	if c.be.CallCount("PushImage") != 1 {
		t.Fatal("a local image was pushed")
	}
	c.be.Inject("PushImage", &fake.Fault{Err: errors.New("denied: requested access to the resource is denied")})
	id, _ = c.agent.PushImage(ctx, "reg.example/bai/x:1", false, RegistryInfo{})
	if task := unitWaitTask(t, c.agent, id); task.Status != bgtask.Failed || !strings.Contains(task.Message, "denied") {
		t.Fatalf("failed push %+v", task)
	}
	if got, ok := c.agent.Task(bgtask.Hex(id)); !ok || got.Status != bgtask.Failed {
		t.Fatalf("Task by its hex id: %+v %v", got, ok)
	}
	if _, ok := c.agent.Task("00000000-0000-0000-0000-000000000000"); ok {
		t.Fatal("an unknown task was found")
	}
}

func mustImages(t *testing.T, c *core) []backend.Image {
	t.Helper()
	all, err := c.be.ListImages(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return all
}

func TestPurgeImages_Fake(t *testing.T) {
	t.Parallel()
	c := newCore(t, nil, nil)
	c.be.AddImage(backend.Image{ID: "sha256:p1", Tags: []string{"bai/python:3.11"}, Labels: fakeImageLabels})
	c.be.AddImage(backend.Image{ID: "sha256:p2", Tags: []string{"reg.example/bai/r:1"}, Labels: fakeImageLabels})
	c.be.Inject("RemoveImage", &fake.Fault{Err: errors.New("image is in use by a container"), Times: 0})
	out, err := c.agent.PurgeImages(context.Background(), []string{"reg.example/bai/r:1"}, false, false)
	if err != nil || len(out) != 1 || out[0]["image"] != "reg.example/bai/r:1" || !strings.Contains(out[0]["error"].(string), "in use") {
		t.Fatalf("purge of an image in use: %v %v", out, err)
	}
	c.be.Inject("RemoveImage", nil)
	// The manager names a local image local/project/name:tag.
	out, err = c.agent.PurgeImages(context.Background(), []string{"local/bai/python:3.11", "reg.example/bai/r:1", "bai/missing:1"}, true, false)
	if err != nil || len(out) != 3 {
		t.Fatalf("purge: %v %v", out, err)
	}
	if out[0]["error"] != nil || out[1]["error"] != nil {
		t.Fatalf("purge of present images: %v", out)
	}
	if e, _ := out[2]["error"].(string); !strings.Contains(e, "bai/missing:1") {
		t.Fatalf("purge of a missing image: %v", out[2])
	}
	for _, ref := range []string{"bai/python:3.11", "reg.example/bai/r:1"} {
		if _, err := c.be.InspectImage(context.Background(), ref); !errors.Is(err, backend.ErrNotFound) {
			t.Errorf("%s still present: %v", ref, err)
		}
	}
}

// The heartbeat's image list: kernel images only (kernelspec 1), every
// tag but <none>, with the architecture inspected once per image.
func TestImagesList_Fake(t *testing.T) {
	t.Parallel()
	c := newCore(t, nil, nil)
	c.be.AddImage(backend.Image{ID: "sha256:arm", Tags: []string{"bai/arm:1", "bai/arm:latest", "<none>:<none>"}, Labels: map[string]string{"ai.backend.kernelspec": "1"}, Architecture: "arm64"})
	c.be.AddImage(backend.Image{ID: "sha256:plain", Tags: []string{"ubuntu:22.04"}})
	c.be.AddImage(backend.Image{ID: "sha256:ks2", Tags: []string{"bai/future:1"}, Labels: map[string]string{"ai.backend.kernelspec": "2"}})
	c.be.AddImage(backend.Image{ID: "sha256:noarch", Tags: []string{"bai/noarch:1"}, Labels: map[string]string{"ai.backend.kernelspec": "1"}})
	ctx := context.Background()
	kimgs, err := c.agent.ListImages(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, i := range kimgs {
		ids = append(ids, i.ID)
	}
	if strings.Join(ids, ",") != "sha256:arm,sha256:fake,sha256:ks2,sha256:noarch" {
		t.Fatalf("kernel images %v", ids)
	}
	got := map[string]string{}
	imgs, err := c.agent.Images(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range imgs {
		got[m["canonical"].(string)] = m["digest"].(string) + "/" + m["architecture"].(string)
	}
	want := map[string]string{
		"bai/arm:1": "sha256:arm/aarch64", "bai/arm:latest": "sha256:arm/aarch64",
		fakeImage: "sha256:fake/x86_64", "bai/noarch:1": "sha256:noarch/x86_64",
	}
	if len(got) != len(want) {
		t.Fatalf("images %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: %q, want %q", k, got[k], v)
		}
	}
	inspects := c.be.CallCount(fake.CallInspectImage)
	if _, err := c.agent.Images(ctx); err != nil {
		t.Fatal(err)
	}
	if n := c.be.CallCount(fake.CallInspectImage); n != inspects {
		t.Fatalf("architectures inspected again: %d -> %d", inspects, n)
	}
	c.be.Inject(fake.CallListImages, &fake.Fault{Err: errors.New("engine down"), Times: 1})
	if _, err := c.agent.Images(ctx); err == nil || !strings.Contains(err.Error(), "engine down") {
		t.Fatalf("images with the engine down: %v", err)
	}
}

// check_and_pull refuses malformed configs before any task starts; a pull
// that fails publishes image_pull_failed; requests for an image being
// pulled share its task.
func TestCheckAndPullFailures_Fake(t *testing.T) {
	t.Parallel()
	// Timeouts long enough for the checks made while a hung call waits
	// (a parallel test on a loaded machine can stall for 300 ms).
	c := newCore(t, nil, func(o *Options) { o.PullTimeout = 2 * time.Second })
	ctx := context.Background()
	reg := RegistryInfo{Name: "reg.example:5000"}
	if _, err := c.agent.CheckAndPull(ctx, map[string]ImageConfig{"x": {Canonical: "reg.example:5000/bai/x:1", Project: "bai", Registry: reg, AutoPull: "sometimes"}}); !errors.Is(err, ErrInvalidArgument) || !strings.Contains(err.Error(), "auto_pull") {
		t.Fatalf("bad auto_pull: %v", err)
	}
	if _, err := c.agent.CheckAndPull(ctx, map[string]ImageConfig{"x": {Canonical: "::bad::", Registry: reg}}); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("bad reference: %v", err)
	}
	if c.events.has("bgtask_updated") {
		t.Fatal("a task started for a refused request")
	}

	// Not in the registry: the pull fails.
	ids, err := c.agent.CheckAndPull(ctx, map[string]ImageConfig{"reg.example:5000/bai/gone:1": {Project: "bai", Registry: reg, AutoPull: "digest"}})
	if err != nil {
		t.Fatal(err)
	}
	task := unitWaitTask(t, c.agent, ids["reg.example:5000/bai/gone:1"])
	if task.Status != bgtask.Failed || !strings.Contains(task.Message, "not found") {
		t.Fatalf("pull of a missing image %+v", task)
	}
	if !c.events.has("image_pull_failed") || !c.events.has("image_pull_started") {
		t.Fatal("no image_pull_started/failed")
	}

	// A pull that hangs times out (api.pull-timeout); meanwhile the image
	// is being pulled and a second request shares the task.
	c.be.AddRegistryImage("reg.example:5000/bai/slow:1", backend.Image{ID: "sha256:slow", Labels: fakeImageLabels})
	c.be.Inject(fake.CallPullImage, &fake.Fault{Hang: true, Times: 1})
	cfg := map[string]ImageConfig{"reg.example:5000/bai/slow:1": {Project: "bai", Registry: reg, AutoPull: "tag"}}
	first, err := c.agent.CheckAndPull(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the pull entered", func() bool { return c.be.CallCount(fake.CallPullImage) >= 2 })
	if !c.agent.IsPulling("reg.example:5000/bai/slow:1") {
		t.Fatal("not pulling")
	}
	second, _ := c.agent.CheckAndPull(ctx, cfg)
	if first["reg.example:5000/bai/slow:1"] != second["reg.example:5000/bai/slow:1"] {
		t.Fatalf("a second request started another task: %v %v", first, second)
	}
	task = unitWaitTask(t, c.agent, first["reg.example:5000/bai/slow:1"])
	if task.Status != bgtask.Failed || !strings.Contains(task.Message, "timed out") {
		t.Fatalf("hanging pull %+v", task)
	}
	waitFor(t, 5*time.Second, "the pull forgotten", func() bool { return !c.agent.IsPulling("reg.example:5000/bai/slow:1") })

	// auto_pull none with the image missing fails without a pull.
	pulls := c.be.CallCount(fake.CallPullImage)
	ids, _ = c.agent.CheckAndPull(ctx, map[string]ImageConfig{"reg.example:5000/bai/none:1": {Project: "bai", Registry: reg, AutoPull: "none"}})
	task = unitWaitTask(t, c.agent, ids["reg.example:5000/bai/none:1"])
	if task.Status != bgtask.Failed || !strings.Contains(task.Message, "auto_pull is none") || c.be.CallCount(fake.CallPullImage) != pulls {
		t.Fatalf("auto_pull none %+v", task)
	}
	// A digest that differs from the local image's id pulls again.
	c.be.AddImage(backend.Image{ID: "sha256:old", Tags: []string{"reg.example:5000/bai/dg:1"}, Labels: fakeImageLabels})
	c.be.AddRegistryImage("reg.example:5000/bai/dg:1", backend.Image{ID: "sha256:new", Labels: fakeImageLabels})
	ids, _ = c.agent.CheckAndPull(ctx, map[string]ImageConfig{"reg.example:5000/bai/dg:1": {Project: "bai", Registry: reg, Digest: "sha256:new"}})
	task = unitWaitTask(t, c.agent, ids["reg.example:5000/bai/dg:1"])
	if task.Status != bgtask.Done || task.Message != "pulled reg.example:5000/bai/dg:1" || c.be.CallCount(fake.CallPullImage) != pulls+1 {
		t.Fatalf("digest pull %+v", task)
	}
}

func TestRegistryAuth_Fake(t *testing.T) {
	t.Parallel()
	if got := registryAuth(RegistryInfo{URL: "https://reg.example"}); got != "" {
		t.Fatalf("anonymous: %q", got)
	}
	got := registryAuth(RegistryInfo{URL: "https://reg.example:5000", Username: "u", Password: "p/w"})
	b, err := base64.URLEncoding.DecodeString(got)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]string
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	if m["username"] != "u" || m["password"] != "p/w" || m["serveraddress"] != "reg.example:5000" {
		t.Fatalf("auth %v", m)
	}
	for _, v := range []string{"", "digest", "tag", "none"} {
		if err := ValidateAutoPull(v); err != nil {
			t.Errorf("%q refused: %v", v, err)
		}
	}
	ctx, cancel := withSeconds(context.Background(), 0)
	if _, ok := ctx.Deadline(); ok {
		t.Error("0 s set a deadline")
	}
	cancel()
	before := time.Now()
	ctx, cancel = withSeconds(context.Background(), 1.5)
	if d, ok := ctx.Deadline(); !ok || d.Before(before.Add(1500*time.Millisecond)) || d.After(time.Now().Add(1500*time.Millisecond)) {
		t.Errorf("1.5 s: deadline %v %v", d, ok)
	}
	cancel()
}
