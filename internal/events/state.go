package events

import (
	"bytes"
	"compress/zlib"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/bai-agent/bai-agent/internal/redisconn"

	"github.com/bai-agent/bai-agent/internal/event"
)

// StateOptions configure the StateWriter.
type StateOptions struct {
	AgentID  string
	Redis    *redisconn.Conn
	Log      *slog.Logger
	Interval time.Duration // installed images (the heartbeat interval)
	// Callbacks; each must be cheap and must not block on Redis.
	// Kernels lists the running kernels (kernel:presence:{id}).
	Kernels        func() []string
	ContainerCount func() int
	Images         func(ctx context.Context) ([]map[string]any, error)
	// Committing lists the kernels whose commit is in progress
	// (kernel.{id}.commit).
	Committing func() []string
	Metadata   map[string]any // computer.metadata fields
	// Discovery is this agent's service_discovery.agent.{id} entry; nil
	// writes none.
	Discovery *Discovery
	Producer  event.Sink
	ChunkSize int // container log chunk (64 KiB)
}

// StateWriter keeps the plain Redis keys the manager reads up to date,
// each job on its own goroutine with its own deadline.
type StateWriter struct {
	o      StateOptions
	stat   *redis.Client
	live   *redis.Client
	image  *redis.Client
	clog   *redis.Client
	cancel context.CancelFunc
	wg     sync.WaitGroup

	// presenceMu guards present: the kernels whose presence key the last
	// pass wrote, so that ended kernels' keys are removed.
	presenceMu sync.Mutex
	present    map[string]bool
	// presenceKick asks for a presence pass now (a kernel started).
	presenceKick chan struct{}
	// release gives back the process's shared clients.
	release []func()
}

// Redis key lifetimes the manager relies on (upstream's
// KERNEL_HEALTH_TTL_SEC, COMMIT_STATUS_EXPIRE and the service discovery
// TTL).
const (
	presenceTTL       = 300 * time.Second
	presenceInterval  = 60 * time.Second
	commitStatusTTL   = 13 * time.Second
	commitInterval    = 7 * time.Second
	discoveryTTL      = 180 * time.Second
	discoveryInterval = 60 * time.Second
)

// StartState starts the periodic writers.
func StartState(o StateOptions) *StateWriter {
	if o.ChunkSize == 0 {
		o.ChunkSize = 64 << 10
	}
	s := &StateWriter{o: o, present: map[string]bool{}, presenceKick: make(chan struct{}, 1)}
	for _, c := range []struct {
		to   **redis.Client
		role string
		db   int
	}{
		{&s.stat, redisconn.RoleStatistics, DBStat}, {&s.live, redisconn.RoleLive, DBLive},
		{&s.image, redisconn.RoleImage, DBImage}, {&s.clog, redisconn.RoleContainerLog, DBContainerLog},
	} {
		var release func()
		*c.to, release = o.Redis.Shared(c.role, c.db)
		s.release = append(s.release, release)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	s.every(ctx, "computer.metadata", time.Minute, s.writeMetadata)
	s.everyOrKick(ctx, "kernel presence", presenceInterval, s.presenceKick, s.writePresence)
	s.every(ctx, "container count", 10*time.Second, s.writeContainerCount)
	s.every(ctx, "installed images", o.Interval, s.writeImages)
	s.every(ctx, "service discovery", discoveryInterval, s.writeDiscovery)
	s.every(ctx, "commit status", commitInterval, s.writeCommitStatus)
	return s
}

// Close stops the writers.
func (s *StateWriter) Close() {
	s.cancel()
	closeWithin(func() {
		s.wg.Wait()
		for _, release := range s.release {
			release()
		}
	})
}

func (s *StateWriter) every(ctx context.Context, what string, interval time.Duration, job func(context.Context) error) {
	s.everyOrKick(ctx, what, interval, nil, job)
}

// everyOrKick runs job every interval, and at once when kick fires.
func (s *StateWriter) everyOrKick(ctx context.Context, what string, interval time.Duration, kick <-chan struct{}, job func(context.Context) error) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		failing := false
		for {
			jctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			err := func() (err error) {
				defer func() {
					if r := recover(); r != nil {
						err = fmt.Errorf("panic: %v", r)
					}
				}()
				return job(jctx)
			}()
			cancel()
			if err != nil && !failing && ctx.Err() == nil {
				s.o.Log.Warn("redis state update failed; will retry", "what", what, "error", err)
			}
			failing = err != nil
			select {
			case <-ctx.Done():
				return
			case <-time.After(interval):
			case <-kick:
			}
		}
	}()
}

// RefreshPresence writes the presence keys now instead of at the next
// minute (a kernel has just started; the manager's stale-kernel sweep must
// find its key). It never blocks.
func (s *StateWriter) RefreshPresence() {
	select {
	case s.presenceKick <- struct{}{}:
	default:
	}
}

func (s *StateWriter) writeMetadata(ctx context.Context) error {
	if len(s.o.Metadata) == 0 {
		return nil
	}
	vals := map[string]any{}
	for k, v := range s.o.Metadata {
		b, _ := json.Marshal(v)
		vals[k] = string(b)
	}
	return s.stat.HSet(ctx, "computer.metadata", vals).Err()
}

// writePresence refreshes kernel:presence:{id} for every running kernel
// as upstream's update_kernel_presence_batch does: presence "1" and
// last_presence as integer seconds of the Redis server's clock (the
// manager parses it with int()), TTL 300 s. Keys of kernels that are no
// longer running are deleted.
func (s *StateWriter) writePresence(ctx context.Context) error {
	now, err := s.live.Time(ctx).Result()
	if err != nil {
		return err
	}
	ts := strconv.FormatInt(now.Unix(), 10)
	running := map[string]bool{}
	pipe := s.live.Pipeline()
	for _, k := range s.o.Kernels() {
		running[k] = true
		key := PresenceKey(k)
		pipe.HSet(ctx, key, "presence", "1", "last_presence", ts)
		pipe.Expire(ctx, key, presenceTTL)
	}
	s.presenceMu.Lock()
	for k := range s.present {
		if !running[k] {
			pipe.Del(ctx, PresenceKey(k))
		}
	}
	s.presenceMu.Unlock()
	if _, err = pipe.Exec(ctx); err != nil {
		return err
	}
	s.presenceMu.Lock()
	s.present = running
	s.presenceMu.Unlock()
	return nil
}

// PresenceKey is a kernel's presence hash in the live database.
func PresenceKey(kernelID string) string { return "kernel:presence:" + kernelID }

// ForgetKernel removes an ended kernel's presence key at once (the
// periodic pass would do it within a minute).
func (s *StateWriter) ForgetKernel(ctx context.Context, kernelID string) error {
	s.presenceMu.Lock()
	delete(s.present, kernelID)
	s.presenceMu.Unlock()
	return s.live.Del(ctx, PresenceKey(kernelID)).Err()
}

// writeCommitStatus marks kernels being committed as upstream's
// update_kernel_commit_statuses does: kernel.{id}.commit = "ongoing",
// expiring 13 s after the last 7-s pass that saw the commit lock.
func (s *StateWriter) writeCommitStatus(ctx context.Context) error {
	if s.o.Committing == nil {
		return nil
	}
	ids := s.o.Committing()
	if len(ids) == 0 {
		return nil
	}
	pipe := s.stat.Pipeline()
	for _, id := range ids {
		pipe.Set(ctx, "kernel."+id+".commit", "ongoing", commitStatusTTL)
	}
	_, err := pipe.Exec(ctx)
	return err
}

func (s *StateWriter) writeContainerCount(ctx context.Context) error {
	return s.stat.Set(ctx, "container_count."+s.o.AgentID, s.o.ContainerCount(), 24*time.Hour).Err()
}

func (s *StateWriter) writeImages(ctx context.Context) error {
	if s.o.Images == nil {
		return nil
	}
	imgs, err := s.o.Images(ctx)
	if err != nil {
		return err
	}
	if imgs == nil {
		imgs = []map[string]any{}
	}
	b, _ := json.Marshal(imgs)
	return s.image.Set(ctx, "installed_image:"+s.o.AgentID, string(b), 0).Err()
}

// Discovery is the agent's ServiceMetadata in Redis service discovery.
type Discovery struct {
	ID          string
	DisplayName string
	Version     string
	// Address is host:port of the internal HTTP server (str(HostPortPair)).
	Address string
	Port    int
	Labels  map[string]string
	// Registered is the registration time (health_status.registration_time).
	Registered time.Time
}

// Key is service_discovery.agent.{id}.
func (d *Discovery) Key() string { return "service_discovery.agent." + d.ID }

// Fields renders the hash exactly as upstream's RedisServiceDiscovery
// writes ServiceMetadata.model_dump(): every field value is JSON.
func (d *Discovery) Fields(now time.Time) map[string]any {
	js := func(v any) string {
		b, _ := json.Marshal(v)
		return string(b)
	}
	labels := d.Labels
	if labels == nil {
		labels = map[string]string{}
	}
	return map[string]any{
		"id":            js(d.ID),
		"display_name":  js(d.DisplayName),
		"service_group": js("agent"),
		"version":       js(d.Version),
		"endpoint": js(map[string]any{
			"address": d.Address, "port": d.Port, "protocol": "http", "prometheus_address": d.Address,
		}),
		"health_status": js(map[string]float64{
			"registration_time": float64(d.Registered.UnixNano()) / 1e9,
			"last_heartbeat":    float64(now.UnixNano()) / 1e9,
		}),
		"labels": js(labels),
	}
}

func (s *StateWriter) writeDiscovery(ctx context.Context) error {
	d := s.o.Discovery
	if d == nil {
		return nil
	}
	pipe := s.stat.Pipeline()
	pipe.HSet(ctx, d.Key(), d.Fields(time.Now()))
	pipe.Expire(ctx, d.Key(), discoveryTTL)
	_, err := pipe.Exec(ctx)
	return err
}

// CollectLogs stores a finished container's logs for the manager
// (containerlog.{cid}: zlib+base64 JSON chunks, kept an hour) and then
// publishes do_sync_kernel_logs. Bounded by ctx (the CLEAN step allows
// 60 s).
func (s *StateWriter) CollectLogs(ctx context.Context, kernelID, containerID string, logs []byte) error {
	key := "containerlog." + containerID
	pipe := s.clog.Pipeline()
	for off := 0; off < len(logs) || off == 0; off += s.o.ChunkSize {
		end := off + s.o.ChunkSize
		if end > len(logs) {
			end = len(logs)
		}
		var buf bytes.Buffer
		zw := zlib.NewWriter(&buf)
		_, _ = zw.Write(logs[off:end])
		_ = zw.Close()
		chunk, _ := json.Marshal(map[string]any{"compress_type": "zlib", "content": base64.StdEncoding.EncodeToString(buf.Bytes())})
		pipe.RPush(ctx, key, string(chunk))
		if end >= len(logs) {
			break
		}
	}
	pipe.Expire(ctx, key, time.Hour)
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("store container logs of %s: %w", containerID, err)
	}
	s.o.Producer.Publish(ctx, event.DoSyncKernelLogs{KernelID: kernelID, ContainerID: containerID})
	return nil
}
