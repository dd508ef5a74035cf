package events

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/bai-agent/bai-agent/internal/redisconn"

	"github.com/bai-agent/bai-agent/internal/event"
	"github.com/bai-agent/bai-agent/internal/volumes"

	"github.com/bai-agent/bai-agent/internal/wire"
	"github.com/bai-agent/bai-agent/internal/wire/msgpack"
)

// VolumeRequest is do_volume_mount / do_volume_unmount.
type VolumeRequest struct {
	Mount         bool
	DirName       string
	VolumeBackend string
	QuotaScopeID  string
	FSLocation    string
	FSType        string
	CmdOptions    string
	ScalingGroup  string
	// EditFstab asks for the fstab line to be added (mount) or removed
	// (unmount); FstabPath is the file ("" means /etc/fstab).
	EditFstab bool
	FstabPath string
}

// volumeConcurrency bounds the volume requests handled at once; requests
// for the same dir_name run one after another in arrival order.
const volumeConcurrency = 8

// VolumeHandler mounts or unmounts and returns the mount path and an error
// message ("" on success).
type VolumeHandler func(ctx context.Context, r VolumeRequest) (mountPath, errMsg string)

// Subscriber consumes the broadcast events the agent reacts to.
type Subscriber struct {
	ps      *redis.PubSub
	release func() // gives back the process's shared stream client
	wg      sync.WaitGroup
	cancel  context.CancelFunc
	work    *volumes.Serial
}

// EventObserver hears each consumed event: its name, the handler's error
// type name ("" on success) and how long the handler took (upstream's
// EventDispatcher feeds EventMetricObserver this way).
type EventObserver func(eventType, exception string, d time.Duration)

// Subscribe listens on events_all (go-redis re-subscribes after a
// disconnect) and answers volume requests through the producer: each
// request gets one volume_mounted / volume_unmounted broadcast, as
// upstream's handlers produce. Requests are handled off the reading
// goroutine (volumes.Serial): those for one dir_name in arrival order,
// different ones in parallel, so a hung unmount delays nothing else.
// observe may be nil.
func Subscribe(o *redisconn.Conn, agentID string, log *slog.Logger, handle VolumeHandler, prod event.Sink, observe EventObserver) *Subscriber {
	c, release := o.Shared(redisconn.RoleStream, DBStream)
	ctx, cancel := context.WithCancel(context.Background())
	s := &Subscriber{release: release, ps: c.Subscribe(ctx, BroadcastKey), cancel: cancel, work: volumes.NewSerial(volumeConcurrency)}
	answer := func(req VolumeRequest) {
		t0 := time.Now()
		path, errMsg := handle(ctx, req)
		vm := event.VolumeMount{NodeID: agentID, NodeType: "agent", MountPath: path, QuotaScopeID: req.QuotaScopeID}
		if errMsg != "" {
			vm.ErrMsg = &errMsg
		}
		var ev event.Event = event.VolumeUnmounted{VolumeMount: vm}
		if req.Mount {
			ev = event.VolumeMounted{VolumeMount: vm}
		}
		log.Info("volume request handled", "name", ev.EventName(), "dir_name", req.DirName, "mount_path", path, "err_msg", errMsg)
		// The answer is due even when the agent is stopping meanwhile.
		prod.Publish(context.WithoutCancel(ctx), ev)
		if observe != nil {
			// As upstream's handlers, a failed mount is reported in
			// err_msg, not raised: the event was handled.
			name := "do_volume_unmount"
			if req.Mount {
				name = "do_volume_mount"
			}
			observe(name, "", time.Since(t0))
		}
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		ch := s.ps.Channel()
		for {
			select {
			case <-ctx.Done():
				return
			case m, ok := <-ch:
				if !ok {
					return
				}
				req, ok := parseVolumeEvent(m.Payload)
				if !ok {
					continue
				}
				s.work.Submit(req.DirName, func() { answer(req) })
			}
		}
	}()
	return s
}

// Close unsubscribes. go-redis's PubSub.Close waits for a reconnection
// in progress (with an unreachable Redis or Sentinel, for seconds), so it
// gets a bounded time: the agent is stopping and must stop promptly.
func (s *Subscriber) Close() {
	s.cancel()
	closeWithin(func() {
		_ = s.ps.Close()
		s.wg.Wait()
		s.work.Wait() // the handlers see ctx cancelled and end their commands
		s.release()
	})
}

// closeGrace bounds how long closing a Redis component may take at
// shutdown.
const closeGrace = 2 * time.Second

// closeWithin runs a close step for at most closeGrace. go-redis does not
// always honour a cancelled context while it is (re)dialling, notably
// through an unreachable Sentinel, so a stuck call could otherwise hold
// the agent's shutdown for many seconds; the agent is exiting, and what
// is left behind is a goroutine of a process about to end.
func closeWithin(f func()) {
	done := make(chan struct{})
	go func() {
		f()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(closeGrace):
	}
}

// parseVolumeEvent reads a broadcast message in either format.
func parseVolumeEvent(raw string) (VolumeRequest, bool) {
	// Every agent sees every broadcast of the cluster (and a multi-agent
	// process once per agent): the ones that cannot be a volume request
	// are passed over without decoding. Event names are plain ASCII in
	// both formats' JSON.
	if !strings.Contains(raw, "do_volume_") {
		return VolumeRequest{}, false
	}
	var msg struct {
		Name    string `json:"name"`
		Payload string `json:"payload"`
		Args    string `json:"args"`
	}
	if json.Unmarshal([]byte(raw), &msg) != nil {
		return VolumeRequest{}, false
	}
	if msg.Name != "do_volume_mount" && msg.Name != "do_volume_unmount" {
		return VolumeRequest{}, false
	}
	r := VolumeRequest{Mount: msg.Name == "do_volume_mount"}
	if msg.Payload != "" {
		var p map[string]any
		if json.Unmarshal([]byte(msg.Payload), &p) != nil {
			return VolumeRequest{}, false
		}
		s := func(k string) string { v, _ := p[k].(string); return v }
		r.DirName, r.VolumeBackend, r.QuotaScopeID = s("dir_name"), s("volume_backend_name"), s("quota_scope_id")
		r.FSLocation, r.FSType, r.CmdOptions = s("fs_location"), s("fs_type"), s("cmd_options")
		r.ScalingGroup, r.FstabPath = s("scaling_group"), s("fstab_path")
		r.EditFstab, _ = p["edit_fstab"].(bool)
		return r, r.DirName != ""
	}
	// <= 26.8.1: base64 msgpack args: mount [dir_name,
	// volume_backend_name, quota_scope_id, fs_location, fs_type,
	// cmd_options, scaling_group, edit_fstab, fstab_path]; unmount
	// [dir_name, volume_backend_name, quota_scope_id, scaling_group,
	// edit_fstab, fstab_path].
	b, err := base64.StdEncoding.DecodeString(msg.Args)
	if err != nil {
		return VolumeRequest{}, false
	}
	v, err := wire.Decode(b)
	if err != nil {
		return VolumeRequest{}, false
	}
	l, ok := v.([]any)
	if !ok || len(l) < 3 {
		return VolumeRequest{}, false
	}
	str := func(i int) string {
		if i >= len(l) {
			return ""
		}
		switch x := l[i].(type) {
		case string:
			return x
		case msgpack.Ext:
			return ""
		}
		return ""
	}
	boolAt := func(i int) bool {
		if i >= len(l) {
			return false
		}
		b, _ := l[i].(bool)
		return b
	}
	r.DirName, r.VolumeBackend, r.QuotaScopeID = str(0), str(1), str(2)
	if r.Mount {
		r.FSLocation, r.FSType, r.CmdOptions = str(3), str(4), str(5)
		r.ScalingGroup, r.EditFstab, r.FstabPath = str(6), boolAt(7), str(8)
	} else {
		r.ScalingGroup, r.EditFstab, r.FstabPath = str(3), boolAt(4), str(5)
	}
	return r, r.DirName != ""
}
