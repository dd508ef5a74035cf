package discovery

import (
	"context"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/bai-agent/bai-agent/internal/events"
)

// Prefix is upstream's _DEFAULT_PREFIX, below the etcd namespace.
const Prefix = "ai/backend/service_discovery"

// Store is the etcd client (etcdconfig.Client): keys are relative to the
// namespace and quoted per component by the client.
type Store interface {
	PutAll(ctx context.Context, kvs map[string]string) error
	DeletePrefix(ctx context.Context, k string) error
	GetPrefix(ctx context.Context, k string) (map[string]any, error)
}

// Options configure a registration. Zero durations take upstream's.
type Options struct {
	Store   Store
	Service *events.Discovery
	Log     *slog.Logger
	// Interval between heartbeats (60 s).
	Interval time.Duration
	// SweepInterval between sweeps of stale entries (10 min).
	SweepInterval time.Duration
	// HeartbeatTimeout: an entry whose last_heartbeat is older is stale
	// (5 min).
	HeartbeatTimeout time.Duration
	// Now replaces time.Now (tests).
	Now func() time.Time
}

// Registration keeps the agent's entry in etcd until Close.
type Registration struct {
	o      Options
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// ServiceKey is the entry's prefix: {Prefix}/{group}/{id}.
func ServiceKey(group, id string) string { return Prefix + "/" + group + "/" + id }

// pyFloat renders f as Python's str(float) does for Unix times.
func pyFloat(f float64) string {
	s := strconv.FormatFloat(f, 'f', -1, 64)
	if !strings.Contains(s, ".") {
		s += ".0"
	}
	return s
}

func unix(t time.Time) float64 { return float64(t.Unix()) + float64(t.Nanosecond())/1e9 }

// Values is the flattened entry, keys relative to the namespace.
func Values(d *events.Discovery, now time.Time) map[string]string {
	k := ServiceKey("agent", d.ID) + "/"
	m := map[string]string{
		k + "id":                              d.ID,
		k + "display_name":                    d.DisplayName,
		k + "service_group":                   "agent",
		k + "version":                         d.Version,
		k + "endpoint/address":                d.Address,
		k + "endpoint/port":                   strconv.Itoa(d.Port),
		k + "endpoint/protocol":               "http",
		k + "endpoint/prometheus_address":     d.Address,
		k + "health_status/registration_time": pyFloat(unix(d.Registered)),
		k + "health_status/last_heartbeat":    pyFloat(unix(now)),
	}
	for name, v := range d.Labels {
		m[k+"labels/"+name] = v
	}
	return m
}

// Start writes the entry (a failure is logged and retried at the next
// heartbeat) and keeps it fresh until Close.
func Start(o Options) *Registration {
	if o.Interval <= 0 {
		o.Interval = 60 * time.Second
	}
	if o.SweepInterval <= 0 {
		o.SweepInterval = 10 * time.Minute
	}
	if o.HeartbeatTimeout <= 0 {
		o.HeartbeatTimeout = 5 * time.Minute
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &Registration{o: o, cancel: cancel}
	o.Log.Info("registering in etcd service discovery", "id", o.Service.ID, "group", "agent", "display_name", o.Service.DisplayName)
	r.loop(ctx, "heartbeat", o.Interval, r.heartbeat)
	r.loop(ctx, "sweep", o.SweepInterval, r.Sweep)
	return r
}

func (r *Registration) loop(ctx context.Context, what string, every time.Duration, job func(context.Context) error) {
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		for {
			jctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			err := job(jctx)
			cancel()
			if err != nil && ctx.Err() == nil {
				r.o.Log.Warn("etcd service discovery "+what+" failed; will retry", "error", err)
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(every):
			}
		}
	}()
}

func (r *Registration) heartbeat(ctx context.Context) error {
	return r.o.Store.PutAll(ctx, Values(r.o.Service, r.o.Now()))
}

// Sweep removes the entries of every group whose last_heartbeat is older
// than HeartbeatTimeout (upstream's _sweep_unhealthy_services_loop).
func (r *Registration) Sweep(ctx context.Context) error {
	groups, err := r.o.Store.GetPrefix(ctx, Prefix)
	if err != nil {
		return err
	}
	now := unix(r.o.Now())
	for group, v := range groups {
		services, _ := v.(map[string]any)
		for id, sv := range services {
			svc, _ := sv.(map[string]any)
			hs, _ := svc["health_status"].(map[string]any)
			s, _ := hs["last_heartbeat"].(string)
			hb, err := strconv.ParseFloat(s, 64)
			if err != nil {
				continue // not a ServiceMetadata upstream could read either
			}
			if now-hb >= r.o.HeartbeatTimeout.Seconds() {
				r.o.Log.Info("removing stale service discovery entry", "group", group, "id", id)
				if err := r.o.Store.DeletePrefix(ctx, ServiceKey(group, id)); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// Close stops the heartbeats and removes the entry (within 5 s).
func (r *Registration) Close() {
	r.cancel()
	r.wg.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := r.o.Store.DeletePrefix(ctx, ServiceKey("agent", r.o.Service.ID)); err != nil {
		r.o.Log.Warn("etcd service discovery: could not remove the entry", "error", err)
	}
}
