package app_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/shopspring/decimal"

	"github.com/bai-agent/bai-agent/internal/rpc/client"
	"github.com/bai-agent/bai-agent/internal/testutil"
	"github.com/bai-agent/bai-agent/internal/wire/msgpack"
)

// churnStatus is bai_status, decoded.
type churnStatus struct {
	kernels []map[string]any
	used    map[string]decimal.Decimal
}

func (s *stack) status(t *testing.T) churnStatus {
	t.Helper()
	c, err := client.Dial("tcp://"+s.rpc, 10*time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	v, err := c.Call(context.Background(), "bai_status", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(toJSON(v))
	if err != nil {
		t.Fatal(err)
	}
	var st struct {
		Kernels []map[string]any          `json:"kernels"`
		Slots   map[string]map[string]any `json:"slots"`
	}
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatal(err)
	}
	out := churnStatus{kernels: st.Kernels, used: map[string]decimal.Decimal{}}
	for name, sl := range st.Slots {
		d, _ := decimal.NewFromString(fmt.Sprint(sl["used"]))
		out.used[name] = d
	}
	return out
}

// toJSON turns decoded msgpack (ordered maps) into JSON-encodable values.
func toJSON(v any) any {
	switch x := v.(type) {
	case msgpack.Map:
		m := map[string]any{}
		for _, kv := range x {
			m[fmt.Sprint(kv.Key)] = toJSON(kv.Val)
		}
		return m
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = toJSON(e)
		}
		return out
	}
	return v
}

// The agent is SIGKILLed at random moments during a churn of creates,
// destroys and restarts, and started again each time. Afterwards: every
// kernel it lists has exactly one container and one scratch dir, no
// container or scratch dir is left without a kernel, no two kernels share
// a core or a host port, the allocation equals the kernels' sum, and
// every kernel that ended was reported ended. BAI_CHURN_KILLS sets the
// number of kills (3 by default; the hardening issue's figure is 10).
func TestChurnWithKills_Integration(t *testing.T) {
	kills := 3
	if v, err := strconv.Atoi(os.Getenv("BAI_CHURN_KILLS")); err == nil && v > 0 {
		kills = v
	}
	img := testutil.TestImage(t)
	be := testutil.RequireDocker(t)
	s := newStack(t, "")
	s.start()
	// The stream is capped (MAXLEN ~128) and heartbeats fill it: consume it
	// throughout, as the manager does.
	var mu sync.Mutex
	// The kernels the workers act on, learned as the manager learns them:
	// from create_kernels' answer, or from kernel_started when that answer
	// was lost with a killed agent (the restarted agent adopts the kernel;
	// without it two such kernels held both cores and every later create
	// was refused until the test timed out). learned holds every id ever
	// known, so a destroyed kernel's late event does not bring it back.
	var known []string
	learned := map[string]bool{}
	learn := func(kid string) { // mu held
		if kid != "" && !learned[kid] {
			learned[kid] = true
			known = append(known, kid)
		}
	}
	var evMu sync.Mutex
	var allEvents []event
	collectorDone := make(chan struct{})
	stopCollector := make(chan struct{})
	go func() {
		defer close(collectorDone)
		for {
			select {
			case <-stopCollector:
				return
			default:
			}
			res, err := s.rdb.XReadGroup(context.Background(), &redis.XReadGroupArgs{Group: "manager", Consumer: "churn", Streams: []string{"events", ">"}, Count: 100, Block: 300 * time.Millisecond}).Result()
			if err != nil {
				continue
			}
			for _, st := range res {
				for _, m := range st.Messages {
					e := event{Name: fmt.Sprint(m.Values["name"])}
					if p, ok := m.Values["payload"].(string); ok {
						_ = json.Unmarshal([]byte(p), &e.Payload)
					}
					evMu.Lock()
					allEvents = append(allEvents, e)
					evMu.Unlock()
					if e.Name == "kernel_started" {
						kid, _ := e.Payload["kernel_id"].(string)
						mu.Lock()
						learn(kid)
						mu.Unlock()
					}
					_ = s.rdb.XAck(context.Background(), "events", "manager", m.ID)
				}
			}
		}
	}()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	ops := map[string]int{}
	ctl := func(args ...string) (string, error) {
		// A call in flight when the agent is killed is lost: a short timeout.
		out, err := exec.Command(s.bin, append([]string{"ctl", "--addr", s.rpc, "--timeout", "20s"}, args...)...).CombinedOutput()
		return string(out), err
	}
	for w := 0; w < 2; w++ {
		wg.Add(1)
		go func(seed uint64) {
			defer wg.Done()
			r := rand.New(rand.NewPCG(seed, seed))
			for {
				select {
				case <-stop:
					return
				default:
				}
				mu.Lock()
				n := len(known)
				mu.Unlock()
				switch op := r.IntN(10); {
				case op < 5 && n < 6:
					out, err := ctl("--json", "create", "--image", img, "--cpu", "1", "--mem", "64m", "--shm", "8m")
					var res []map[string]any
					if err == nil && json.Unmarshal([]byte(out), &res) == nil {
						mu.Lock()
						learn(res[0]["id"].(string))
						ops["create"]++
						mu.Unlock()
					}
				case op < 8 && n > 0:
					mu.Lock()
					i := r.IntN(len(known))
					kid := known[i]
					known = append(known[:i], known[i+1:]...)
					mu.Unlock()
					if _, err := ctl("destroy", kid); err == nil {
						mu.Lock()
						ops["destroy"]++
						mu.Unlock()
					}
				case n > 0:
					mu.Lock()
					kid := known[r.IntN(len(known))]
					mu.Unlock()
					if _, err := ctl("restart", kid); err == nil {
						mu.Lock()
						ops["restart"]++
						mu.Unlock()
					}
				default:
					time.Sleep(50 * time.Millisecond)
				}
			}
		}(uint64(w + 1))
	}
	r := rand.New(rand.NewPCG(7, 7))
	// Kernels start with the runner's handshake (about a second on a busy
	// 2-core machine): leave room between kills for operations to finish.
	// Each kill also waits until an operation has completed since the
	// last one (on a loaded machine the pause alone may see none), so
	// kills fall between working operations whatever the machine's speed.
	opsDone := func() int {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, v := range ops {
			n += v
		}
		return n
	}
	for i := 0; i < kills; i++ {
		before := opsDone()
		time.Sleep(time.Duration(2500+r.IntN(2500)) * time.Millisecond)
		testutil.Eventually(t, testutil.Slow(2*time.Minute), "an operation completed between two agent kills", func() bool { return opsDone() > before })
		s.kill()
		time.Sleep(time.Duration(r.IntN(500)) * time.Millisecond)
		s.start()
	}
	time.Sleep(6 * time.Second)
	close(stop)
	wg.Wait()
	// Quiescence: two sync periods.
	time.Sleep(5 * time.Second)
	t.Logf("%d kills during %v", kills, ops)

	st := s.status(t)
	kernels := map[string]map[string]any{}
	cores := map[string]string{}
	ports := map[float64]string{}
	usedCPU := decimal.Zero
	for _, k := range st.kernels {
		id := k["id"].(string)
		if _, dup := kernels[id]; dup {
			t.Errorf("kernel %s listed twice", id)
		}
		kernels[id] = k
		if k["state"] != "running" {
			t.Errorf("kernel %s is %v after quiescence", id, k["state"])
		}
		for _, c := range k["cpu_cores"].([]any) {
			if other, taken := cores[fmt.Sprint(c)]; taken {
				t.Errorf("core %v held by %s and %s", c, other, id)
			}
			cores[fmt.Sprint(c)] = id
			usedCPU = usedCPU.Add(decimal.NewFromInt(1))
		}
		for _, p := range []any{k["repl_in_port"], k["repl_out_port"]} {
			pf := p.(float64)
			if other, taken := ports[pf]; taken {
				t.Errorf("host port %v held by %s and %s", pf, other, id)
			}
			ports[pf] = id
		}
	}
	if !st.used["cpu"].Equal(usedCPU) {
		t.Errorf("cpu allocated %s, kernels hold %s", st.used["cpu"], usedCPU)
	}
	containers, err := be.List(context.Background(), map[string]string{"ai.backend.owner": s.id})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, c := range containers {
		kid := c.Labels["ai.backend.kernel-id"]
		if _, ok := kernels[kid]; !ok {
			t.Errorf("container %s (kernel %s) leaked", c.Name, kid)
		}
		if seen[kid] {
			t.Errorf("kernel %s has two containers", kid)
		}
		seen[kid] = true
	}
	for kid := range kernels {
		if !seen[kid] {
			t.Errorf("kernel %s has no container", kid)
		}
	}
	ents, _ := os.ReadDir(filepath.Join(s.root, "scratch"))
	var dirs []string
	for _, e := range ents {
		dirs = append(dirs, e.Name())
		if _, ok := kernels[e.Name()]; !ok {
			t.Errorf("scratch dir %s leaked", e.Name())
		}
	}
	sort.Strings(dirs)
	// Every kernel that started and is gone was reported terminated (the
	// outbox delivers what a killed agent had queued once it is back).
	var started, ended map[string]bool
	testutil.Eventually(t, 30*time.Second, "every ended kernel reported", func() bool {
		evMu.Lock()
		defer evMu.Unlock()
		started, ended = map[string]bool{}, map[string]bool{}
		for _, e := range allEvents {
			kid, _ := e.Payload["kernel_id"].(string)
			switch e.Name {
			case "kernel_started":
				started[kid] = true
			case "kernel_terminated":
				ended[kid] = true
			}
		}
		for kid := range started {
			if _, alive := kernels[kid]; !alive && !ended[kid] {
				return false
			}
		}
		return true
	})
	close(stopCollector)
	<-collectorDone
	n := len(started)
	t.Logf("%d kernels alive, %d scratch dirs, %d kernel_started events, all ended ones reported", len(kernels), len(dirs), n)
	if strings.Contains(fmt.Sprint(ops), "map[]") {
		t.Fatal("the churn did nothing")
	}
}
