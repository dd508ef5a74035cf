package events

import (
	"context"
	"errors"
	"log/slog"
	"math"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// The events stream is trimmed on every XADD to about streamMaxLen entries
// (as upstream's producers do), whether or not the consumer groups have
// read them: a producer that outruns the manager's consumers loses
// events. That is harmless for one event at a time, but not for the
// outbox's replay after an outage, when hundreds of queued records arrive
// at once while the manager's consumer is still reconnecting. The pacer
// keeps the unread part of the stream (the largest lag of the reading
// consumer groups) within paceBudget entries, well inside the newest
// streamMaxLen that trimming never removes, and leaves the rest of that
// length to the other producers (other agents) that add at the same time.
const (
	paceBudget = streamMaxLen / 2
	// A group that has not read for defaultStallAfter while entries wait
	// is treated as gone (a manager that is down, a stale group): its lag
	// no longer holds delivery back, so that one dead group cannot stop a
	// node's events. The manager's consumer reconnects well within it.
	defaultStallAfter = 30 * time.Second
	// paceRecheck bounds how long a measurement is trusted while there is
	// no reading group at all (the manager may create its group later),
	// and is how recent the last look must be for a group's stall time to
	// keep counting.
	paceRecheck = 2 * time.Second
)

// groupSeen is what the pacer last saw of one consumer group.
type groupSeen struct {
	lastID string
	moved  time.Time // when it last read, or had nothing to read
	stale  bool      // logged as stalled
}

// pacer decides how many stream (anycast) records may be added now. One
// serves every producer of the process that writes through the same
// stream client (the agents of a multi-agent process): each counts what
// the others were granted, so that together they stay within the budget.
type pacer struct {
	client     *redis.Client
	log        *slog.Logger
	now        func() time.Time
	stallAfter time.Duration

	mu     sync.Mutex
	groups map[string]*groupSeen
	lag    int // the largest lag of the reading groups at the last look
	added  int // records added since (settled as delivered)
	// inflight are granted and not yet settled: a look cannot see them
	// (their XADD may come after it), so they outlive it.
	inflight int
	lookedAt time.Time
	reading  int  // reading groups at the last look
	blind    bool // the server refused the measurement (logged once)
}

func newPacer(c *redis.Client, log *slog.Logger, stallAfter time.Duration) *pacer {
	if stallAfter <= 0 {
		stallAfter = defaultStallAfter
	}
	return &pacer{client: c, log: log, now: time.Now, stallAfter: stallAfter, groups: map[string]*groupSeen{}}
}

// pacers holds the process's pacers by stream client.
var pacers = struct {
	sync.Mutex
	m map[*redis.Client]*sharedPacer
}{m: map[*redis.Client]*sharedPacer{}}

type sharedPacer struct {
	p     *pacer
	users int
}

// pacerFor returns the pacer of the stream client c (created on first
// use with the first caller's settings) and its release.
func pacerFor(c *redis.Client, log *slog.Logger, stallAfter time.Duration) (*pacer, func()) {
	pacers.Lock()
	defer pacers.Unlock()
	sp := pacers.m[c]
	if sp == nil {
		sp = &sharedPacer{p: newPacer(c, log, stallAfter)}
		pacers.m[c] = sp
	}
	sp.users++
	var once sync.Once
	return sp.p, func() {
		once.Do(func() {
			pacers.Lock()
			defer pacers.Unlock()
			if sp.users--; sp.users == 0 {
				delete(pacers.m, c)
			}
		})
	}
}

// room returns how many anycast records may be added now without pushing
// an unread entry of a reading group out of the trimmed stream, and
// reserves them; want is how many are waiting. Zero means wait and ask
// again.
func (p *pacer) room(ctx context.Context, want int) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	// With a reading group, lag+added+inflight bounds the unread part
	// from above (consumers only shrink it), so Redis is asked again only
	// when that bound could pass the budget: steady traffic costs one
	// XINFO per budget's worth of events. Without one, a group may have
	// appeared: asked again after paceRecheck.
	stale := p.reading == 0 && p.now().Sub(p.lookedAt) >= paceRecheck
	if stale || (p.reading > 0 && p.lag+p.added+p.inflight+want > paceBudget) {
		if err := p.look(ctx); err != nil {
			return 0, err
		}
	}
	n := want
	if p.reading > 0 {
		n = max(0, min(want, paceBudget-p.lag-p.added-p.inflight))
	}
	p.inflight += n
	return n, nil
}

// settle ends a grant of reserved records, of which sent were added to
// the stream (0 when the delivery failed).
func (p *pacer) settle(reserved, sent int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.inflight -= reserved
	p.added += sent
}

// look measures the consumer groups' lag (p.mu held).
func (p *pacer) look(ctx context.Context) error {
	now := p.now()
	groups, err := p.client.XInfoGroups(ctx, StreamKey).Result()
	if err != nil && !errors.Is(err, redis.Nil) && !strings.Contains(err.Error(), "no such key") {
		var rerr redis.Error
		if !errors.As(err, &rerr) {
			return err // Redis unreachable: a delivery failure
		}
		// The server refuses (an ACL user without XINFO, a server
		// without it): deliver unpaced, as upstream does, and say so.
		if !p.blind {
			p.blind = true
			p.log.Warn("cannot measure the event consumers' lag; events are delivered unpaced (the stream's trimming may drop entries a slow consumer has not read)", "error", err)
		}
		p.lookedAt, p.added, p.lag, p.reading = now, 0, 0, 0
		return nil
	}
	if err != nil {
		groups = nil // no stream yet: nobody can be behind
	}
	// Stall time counts only while the pacer watches: after a pause (an
	// idle agent, a Redis outage) a group gets a fresh window, or a
	// consumer still reconnecting would look stalled at the first look.
	watched := !p.lookedAt.IsZero() && now.Sub(p.lookedAt) <= paceRecheck
	p.lookedAt, p.added, p.lag, p.reading = now, 0, 0, 0
	seen := map[string]bool{}
	for _, g := range groups {
		seen[g.Name] = true
		lag := g.Lag
		if lag < 0 || (lag == 0 && g.EntriesRead == 0) {
			// Redis could not say (entries deleted, or before 7.0, which
			// has no lag field): count what follows the group's position.
			ids, err := p.client.XRangeN(ctx, StreamKey, afterID(g.LastDeliveredID), "+", paceBudget+1).Result()
			if err != nil {
				return err
			}
			lag = int64(len(ids))
		}
		s := p.groups[g.Name]
		if s == nil {
			s = &groupSeen{lastID: g.LastDeliveredID, moved: now}
			p.groups[g.Name] = s
		}
		if !watched && !s.stale {
			s.moved = now
		}
		if s.lastID != g.LastDeliveredID || lag == 0 {
			s.lastID, s.moved = g.LastDeliveredID, now
			if s.stale {
				s.stale = false
				p.log.Info("event consumer group reads again; pacing the stream for it", "group", g.Name)
			}
		}
		if now.Sub(s.moved) >= p.stallAfter {
			if !s.stale {
				s.stale = true
				p.log.Warn("event consumer group has not read for a while; not waiting for it (entries beyond the stream's trim length may be lost to it)", "group", g.Name, "lag", lag, "idle", now.Sub(s.moved).Round(time.Second))
			}
			continue
		}
		p.reading++
		p.lag = max(p.lag, int(lag))
	}
	for name := range p.groups {
		if !seen[name] {
			delete(p.groups, name)
		}
	}
	return nil
}

// afterID is the smallest stream id after id ("ms-seq"), for an XRANGE
// start that excludes id on servers older than 6.2 (no "(" ranges).
func afterID(id string) string {
	ms, seq, ok := strings.Cut(id, "-")
	if !ok {
		return id
	}
	n, err := strconv.ParseUint(seq, 10, 64)
	if err != nil {
		return id
	}
	if n == math.MaxUint64 {
		m, err := strconv.ParseUint(ms, 10, 64)
		if err != nil {
			return id
		}
		return strconv.FormatUint(m+1, 10) + "-0"
	}
	return ms + "-" + strconv.FormatUint(n+1, 10)
}
