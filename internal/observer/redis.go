package observer

import (
	"context"
	"errors"
	"time"

	"github.com/redis/go-redis/v9"
)

// DefaultRedisTimeout bounds each Redis call of the observers.
const DefaultRedisTimeout = 5 * time.Second

// presenceBatch is how many HGETALLs one pipeline carries.
const presenceBatch = 500

func withTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if d <= 0 {
		d = DefaultRedisTimeout
	}
	return context.WithTimeout(ctx, d)
}

// RedisPresence reads the manager's stamps from the live database
// (upstream's ValkeyScheduleClient on REDIS_LIVE_DB, 2).
type RedisPresence struct {
	Client  *redis.Client
	Timeout time.Duration // each call; DefaultRedisTimeout when zero
}

// AgentLastCheck implements PresenceStore.
func (r RedisPresence) AgentLastCheck(ctx context.Context, agentID string) (string, bool, error) {
	ctx, cancel := withTimeout(ctx, r.Timeout)
	defer cancel()
	v, err := r.Client.Get(ctx, AgentLastCheckKey(agentID)).Result()
	if errors.Is(err, redis.Nil) {
		return "", false, nil
	}
	if err != nil {
		return "", false, err
	}
	return v, true, nil
}

// KernelPresence implements PresenceStore: HGETALL of each key, read
// only (the agent never writes last_check).
func (r RedisPresence) KernelPresence(ctx context.Context, kernelIDs []string) (map[string]map[string]string, error) {
	out := make(map[string]map[string]string, len(kernelIDs))
	for start := 0; start < len(kernelIDs); start += presenceBatch {
		ids := kernelIDs[start:min(start+presenceBatch, len(kernelIDs))]
		if err := r.batch(ctx, ids, out); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func (r RedisPresence) batch(ctx context.Context, ids []string, out map[string]map[string]string) error {
	ctx, cancel := withTimeout(ctx, r.Timeout)
	defer cancel()
	pipe := r.Client.Pipeline()
	cmds := make([]*redis.MapStringStringCmd, len(ids))
	for i, id := range ids {
		cmds[i] = pipe.HGetAll(ctx, PresenceKey(id))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return err
	}
	for i, id := range ids {
		if h := cmds[i].Val(); len(h) > 0 {
			out[id] = h
		}
	}
	return nil
}

// AbuseReportHash is the hash (statistics database) of reported kernels:
// kernel id -> "detected" or "cleaning" (upstream's AbuseReportValue),
// read by the manager's get_abusing_report API.
const AbuseReportHash = "abuse_report"

// Abuse report values (AbuseReportValue).
const (
	AbuseDetected = "detected"
	AbuseCleaning = "cleaning"
)

// RedisAbuseReport writes the abuse_report hash in the statistics
// database (upstream's ValkeyStatClient.update_abuse_report, DB 0).
type RedisAbuseReport struct {
	Client  *redis.Client
	Timeout time.Duration // DefaultRedisTimeout when zero
}

// ReplaceAbuseReport implements AbuseStore: the hash is deleted and
// refilled in one MULTI/EXEC.
func (r RedisAbuseReport) ReplaceAbuseReport(ctx context.Context, report map[string]string) error {
	ctx, cancel := withTimeout(ctx, r.Timeout)
	defer cancel()
	_, err := r.Client.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Del(ctx, AbuseReportHash)
		if len(report) > 0 {
			p.HSet(ctx, AbuseReportHash, report)
		}
		return nil
	})
	return err
}
