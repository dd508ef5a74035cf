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
)

// StateOptions configure the StateWriter.
type StateOptions struct {
	AgentID  string
	Redis    *redis.Options
	Log      *slog.Logger
	Interval time.Duration // installed images (the heartbeat interval)
	// Callbacks; each must be cheap and must not block on Redis.
	Kernels        func() []string
	ContainerCount func() int
	Images         func(ctx context.Context) ([]map[string]any, error)
	Metadata       map[string]any    // computer.metadata fields
	Discovery      map[string]string // service_discovery.agent.{uuid} fields
	DiscoveryID    string
	Producer       interface {
		Publish(ctx context.Context, name string, payload map[string]any)
	}
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
}

func clientFor(o *redis.Options, db int) *redis.Client {
	ro := *o
	ro.DB = db
	return redis.NewClient(&ro)
}

// StartState starts the periodic writers.
func StartState(o StateOptions) *StateWriter {
	if o.ChunkSize == 0 {
		o.ChunkSize = 64 << 10
	}
	s := &StateWriter{o: o, stat: clientFor(o.Redis, DBStat), live: clientFor(o.Redis, DBLive), image: clientFor(o.Redis, DBImage), clog: clientFor(o.Redis, DBContainerLog)}
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	s.every(ctx, "computer.metadata", time.Minute, s.writeMetadata)
	s.every(ctx, "kernel presence", time.Minute, s.writePresence)
	s.every(ctx, "container count", 10*time.Second, s.writeContainerCount)
	s.every(ctx, "installed images", o.Interval, s.writeImages)
	s.every(ctx, "service discovery", time.Minute, s.writeDiscovery)
	return s
}

// Close stops the writers.
func (s *StateWriter) Close() {
	s.cancel()
	s.wg.Wait()
	for _, c := range []*redis.Client{s.stat, s.live, s.image, s.clog} {
		c.Close()
	}
}

func (s *StateWriter) every(ctx context.Context, what string, interval time.Duration, job func(context.Context) error) {
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
			}
		}
	}()
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

func (s *StateWriter) writePresence(ctx context.Context) error {
	now, err := s.live.Time(ctx).Result()
	if err != nil {
		return err
	}
	ts := strconv.FormatFloat(float64(now.UnixNano())/1e9, 'f', 6, 64)
	pipe := s.live.Pipeline()
	for _, k := range s.o.Kernels() {
		key := "kernel:presence:" + k
		pipe.HSet(ctx, key, "presence", "1", "last_presence", ts)
		pipe.Expire(ctx, key, 300*time.Second)
	}
	_, err = pipe.Exec(ctx)
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

func (s *StateWriter) writeDiscovery(ctx context.Context) error {
	if s.o.DiscoveryID == "" {
		return nil
	}
	key := "service_discovery.agent." + s.o.DiscoveryID
	vals := map[string]any{}
	for k, v := range s.o.Discovery {
		vals[k] = v
	}
	pipe := s.stat.Pipeline()
	pipe.HSet(ctx, key, vals)
	pipe.Expire(ctx, key, 180*time.Second)
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
	s.o.Producer.Publish(ctx, "do_sync_kernel_logs", map[string]any{"kernel_id": kernelID, "container_id": containerID})
	return nil
}
