package events

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/bai-agent/bai-agent/internal/redisconn"
	"github.com/bai-agent/bai-agent/internal/testutil"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// queueRecords writes n anycast records from source to the outbox in dir,
// as a process that could not reach Redis (and was then killed) leaves
// them.
func queueRecords(t *testing.T, dir, source string, n int) {
	t.Helper()
	ob, err := OpenOutbox(dir, 64<<20)
	if err != nil {
		t.Fatal(err)
	}
	defer ob.Close()
	for i := range n {
		if _, err := ob.Append(&Record{Name: "kernel_terminated", Source: source, Anycast: true, Payload: fmt.Sprintf(`{"seq":%d}`, i)}); err != nil {
			t.Fatal(err)
		}
	}
}

// streamWithGroup returns a client of the events database; with group
// set, the group exists (at "$", as the manager creates it) first.
func streamWithGroup(t *testing.T, addr, group string) *redis.Client {
	t.Helper()
	rc := redis.NewClient(&redis.Options{Addr: addr, DB: DBStream})
	t.Cleanup(func() { rc.Close() })
	if group != "" {
		if err := rc.XGroupCreateMkStream(context.Background(), StreamKey, group, "$").Err(); err != nil {
			t.Fatal(err)
		}
	}
	return rc
}

func newConn(t *testing.T, target redisconn.Target) *redisconn.Conn {
	t.Helper()
	conn, err := redisconn.New(redisconn.Config{Target: target})
	if err != nil {
		t.Fatal(err)
	}
	return conn
}

// replay starts a producer over the outbox in dir (its queued records go
// out at once).
func replay(t *testing.T, conn *redisconn.Conn, agentID, dir string, stallAfter time.Duration) *Producer {
	t.Helper()
	p, err := NewProducer(Options{AgentID: agentID, Redis: conn, OutboxDir: dir, Log: quiet, StallAfter: stallAfter})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

// slowConsumer reads n events as a busy manager reconnecting after an
// outage would: it starts 2 s late, then reads 8 at a time with a pause,
// acknowledging each. It returns the payloads by source, in the order
// read, and fails when the stream has nothing more for 3 s (the rest were
// trimmed unread) or after a minute.
func slowConsumer(t *testing.T, rc *redis.Client, n int) map[string][]string {
	t.Helper()
	ctx := context.Background()
	got := map[string][]string{}
	time.Sleep(2 * time.Second)
	deadline := time.Now().Add(testutil.Slow(60 * time.Second))
	for total := 0; total < n; {
		if time.Now().After(deadline) {
			t.Fatalf("read %d of %d events in 60 s", total, n)
		}
		res, err := rc.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "manager", Consumer: "m1", Streams: []string{StreamKey, ">"}, Count: 8, Block: 3 * time.Second}).Result()
		if err == redis.Nil {
			t.Fatalf("nothing more to read after %d of %d events for 3 s: the rest were trimmed before the group read them", total, n)
		}
		if err != nil {
			t.Fatalf("xreadgroup after %d events: %v", total, err)
		}
		for _, m := range res[0].Messages {
			src := m.Values["source"].(string)
			got[src] = append(got[src], m.Values["payload"].(string))
			total++
			rc.XAck(ctx, StreamKey, "manager", m.ID)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return got
}

// inOrder checks that each source's events came all, in sequence.
func inOrder(t *testing.T, got map[string][]string, sources []string, n int) {
	t.Helper()
	for _, src := range sources {
		if len(got[src]) != n {
			t.Fatalf("%s: %d events, want %d", src, len(got[src]), n)
		}
		for i, g := range got[src] {
			if want := fmt.Sprintf(`{"seq":%d}`, i); g != want {
				t.Fatalf("%s's event %d is %s, want %s (an event lost or out of order)", src, i, g, want)
			}
		}
	}
}

// The outbox's replay after an outage must not outrun the manager's
// consumer group: every XADD trims the stream to about 128 entries, read
// or not, so a burst of 400 queued events would lose most of them to a
// consumer that is still reconnecting (194 of 400 arrived without the
// pacing).
func TestReplayPacedToSlowConsumer_Integration(t *testing.T) {
	r := testutil.StartRedis(t)
	rc := streamWithGroup(t, r.Addr, "manager")
	const n = 400
	dir := t.TempDir()
	queueRecords(t, dir, "i-pace", n)
	p := replay(t, newConn(t, redisconn.Target{Addr: r.Addr}), "i-pace", dir, 0)
	inOrder(t, slowConsumer(t, rc, n), []string{"i-pace"}, n)
	testutil.Eventually(t, 5*time.Second, "the producer's counters", func() bool {
		st := p.Stats()
		return st.PendingBytes == 0 && st.Delivered == n
	})
}

// The agents of a multi-agent process write through one stream client and
// share its pacer: six outboxes replayed at once to one slow consumer
// lose nothing (each agent counting only its own additions would let
// them add 64 each, 384 together, and Redis' approximate trimming drops
// whole 100-entry nodes once the stream passes about 228: 562 of 600
// arrived so).
func TestReplayPacedAcrossAgents_Integration(t *testing.T) {
	r := testutil.StartRedis(t)
	rc := streamWithGroup(t, r.Addr, "manager")
	conn := newConn(t, redisconn.Target{Addr: r.Addr})
	const agents, n = 6, 100
	var sources []string
	for a := range agents {
		src := fmt.Sprintf("i-%d", a)
		sources = append(sources, src)
		dir := t.TempDir()
		queueRecords(t, dir, src, n)
		replay(t, conn, src, dir, 0)
	}
	inOrder(t, slowConsumer(t, rc, agents*n), sources, n)
}

// A consumer group that never reads (a manager that is gone, a stale group
// name) holds the replay back only for StallAfter; a stream with no group
// at all is not paced.
func TestReplayNotHeldByDeadGroup_Integration(t *testing.T) {
	tests := []struct {
		name  string
		group string
	}{
		{"stalled group", "gone"},
		{"no group", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := testutil.StartRedis(t)
			rc := streamWithGroup(t, r.Addr, tc.group)
			const n = 300
			dir := t.TempDir()
			queueRecords(t, dir, "i-pace", n)
			start := time.Now()
			p := replay(t, newConn(t, redisconn.Target{Addr: r.Addr}), "i-pace", dir, time.Second)
			testutil.Eventually(t, 20*time.Second, "the outbox delivered", func() bool {
				return p.Stats().Delivered == n && p.Stats().PendingBytes == 0
			})
			took := time.Since(start)
			if tc.group != "" && took < time.Second {
				t.Fatalf("a group with %d unread entries was not waited for (delivered all in %s)", paceBudget, took)
			}
			if l := rc.XLen(context.Background(), StreamKey).Val(); l < streamMaxLen || l > n {
				t.Fatalf("stream length %d: trimming as upstream (about %d) expected", l, streamMaxLen)
			}
		})
	}
}

// Stall time counts only while the pacer watches: a group seen again after
// a pause (an idle agent, a Redis outage) gets a fresh window, and one that
// does not read while watched is let go after stallAfter.
func TestPacerStallWindow_Integration(t *testing.T) {
	r := testutil.StartRedis(t)
	rc := streamWithGroup(t, r.Addr, "manager")
	ctx := context.Background()
	for i := 0; i < 10; i++ {
		rc.XAdd(ctx, &redis.XAddArgs{Stream: StreamKey, Values: map[string]any{"name": "x"}})
	}
	clock := time.Unix(1_000_000, 0)
	p := newPacer(rc, quiet, 30*time.Second)
	p.now = func() time.Time { return clock }
	look := func() {
		t.Helper()
		p.mu.Lock()
		defer p.mu.Unlock()
		if err := p.look(ctx); err != nil {
			t.Fatal(err)
		}
	}
	look()
	if p.reading != 1 || p.lag != 10 {
		t.Fatalf("first look: %d reading groups, lag %d", p.reading, p.lag)
	}
	clock = clock.Add(10 * time.Minute) // nobody looked meanwhile
	look()
	if p.reading != 1 {
		t.Fatal("a group seen again after a pause was taken for stalled")
	}
	for i := 0; i < 31; i++ { // watched every second, never reading
		clock = clock.Add(time.Second)
		look()
	}
	if p.reading != 0 {
		t.Fatal("a group that did not read for 31 s while watched still holds delivery back")
	}
	clock = clock.Add(10 * time.Minute)
	look()
	if p.reading != 0 {
		t.Fatal("a stalled group became a reader again without reading")
	}
	rc.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "manager", Consumer: "m1", Streams: []string{StreamKey, ">"}, Count: 1})
	clock = clock.Add(time.Second)
	look()
	if p.reading != 1 {
		t.Fatal("a group that reads again is not paced for")
	}
}

// The pacer asks Redis only when its estimate (the lag it last saw plus
// what it granted since, an upper bound) could pass the budget, not
// before every delivery: steady traffic costs one XINFO per budget's worth
// of events.
func TestPacerLooksOnlyNearBudget_Integration(t *testing.T) {
	r := testutil.StartRedis(t)
	rc := streamWithGroup(t, r.Addr, "manager")
	clock := time.Unix(1_000_000, 0)
	p := newPacer(rc, quiet, 30*time.Second)
	p.now = func() time.Time { return clock }
	looks := 0
	for i := 0; i < 3*paceBudget; i++ {
		before := p.lookedAt
		n, err := p.room(context.Background(), 1)
		if err != nil || n != 1 {
			t.Fatalf("event %d: room %d, %v", i, n, err)
		}
		if p.lookedAt != before {
			looks++
		}
		p.settle(1, 1) // delivered, as the producer reports
		// One event every 10 s; the consumer reads each at once.
		clock = clock.Add(10 * time.Second)
		if _, err := rc.XAdd(context.Background(), &redis.XAddArgs{Stream: StreamKey, Values: map[string]any{"name": "x"}}).Result(); err != nil {
			t.Fatal(err)
		}
		rc.XReadGroup(context.Background(), &redis.XReadGroupArgs{Group: "manager", Consumer: "m1", Streams: []string{StreamKey, ">"}, Count: 10})
	}
	if looks > 4 {
		t.Fatalf("%d XINFO looks for %d events", looks, 3*paceBudget)
	}
}

// An ACL user that may not run XINFO cannot measure the lag: events are
// delivered unpaced (as upstream's), not held as if Redis were down.
func TestReplayUnpacedWhenRefused_Integration(t *testing.T) {
	r := testutil.StartRedis(t)
	admin := streamWithGroup(t, r.Addr, "manager")
	if err := admin.Do(context.Background(), "ACL", "SETUSER", "agent", "on", ">pw", "~*", "&*", "+@all", "-xinfo").Err(); err != nil {
		t.Fatal(err)
	}
	const n = 200
	dir := t.TempDir()
	queueRecords(t, dir, "i-pace", n)
	p := replay(t, newConn(t, redisconn.Target{Addr: r.Addr, Username: "agent", Password: "pw"}), "i-pace", dir, 0)
	testutil.Eventually(t, 10*time.Second, "the outbox delivered", func() bool {
		return p.Stats().Delivered == n
	})
}

func TestAfterID(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"1700000000000-0", "1700000000000-1"},
		{"5-41", "5-42"},
		{"5-18446744073709551615", "6-0"},
		{"0-0", "0-1"},
		{"junk", "junk"},
	} {
		if got := afterID(tc.in); got != tc.want {
			t.Errorf("afterID(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// A grant not yet delivered outlives a look (Redis cannot see it yet):
// otherwise another agent's look in between would hand the same room out
// again and the agents together would outrun the trim (594 of 600 arrived
// once in ten runs of TestReplayPacedAcrossAgents so).
func TestPacerCountsGrantsInFlight_Integration(t *testing.T) {
	r := testutil.StartRedis(t)
	rc := streamWithGroup(t, r.Addr, "manager")
	p := newPacer(rc, quiet, 30*time.Second)
	ctx := context.Background()
	if n, err := p.room(ctx, paceBudget); err != nil || n != paceBudget {
		t.Fatalf("first grant %d, %v", n, err)
	}
	// Another producer's look comes before the first one's XADD.
	p.mu.Lock()
	err := p.look(ctx)
	p.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	if n, err := p.room(ctx, paceBudget); err != nil || n != 0 {
		t.Fatalf("a second grant of %d while %d are in flight (%v)", n, paceBudget, err)
	}
	// Delivered and read: the room comes back.
	for i := 0; i < paceBudget; i++ {
		rc.XAdd(ctx, &redis.XAddArgs{Stream: StreamKey, Values: map[string]any{"name": "x"}})
	}
	p.settle(paceBudget, paceBudget)
	rc.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "manager", Consumer: "m1", Streams: []string{StreamKey, ">"}, Count: paceBudget})
	if n, err := p.room(ctx, 10); err != nil || n != 10 {
		t.Fatalf("after delivery and reading, room %d, %v", n, err)
	}
}
