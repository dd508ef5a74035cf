package zmq

/*
#include <malloc.h>
*/
import "C"

import (
	"context"
	"os"
	"runtime/debug"
	"sync/atomic"
	"time"
)

// largeMessage is the size from which a received message marks the
// process for trimming.
const largeMessage = 1 << 20

// LimitMallocArenas caps glibc's malloc arenas at two, unless the
// operator set MALLOC_ARENA_MAX. libzmq allocates its messages and pipes
// with malloc from whichever OS thread the Go runtime ran the cgo call on,
// and glibc gives each such thread an arena of its own (up to eight per
// core): with hundreds of kernel sockets the freed memory sat in many
// half-empty arenas. Called once, early in start-up.
func LimitMallocArenas() {
	if os.Getenv("MALLOC_ARENA_MAX") != "" {
		return
	}
	C.mallopt(C.M_ARENA_MAX, 2)
}

// trimRounds are the times after the last large message at which the
// trimmer gives memory back: the first once the burst is over, the later
// ones for what its handlers and libzmq's queues still held at the first
// (on a loaded machine they can outlast it by seconds).
var trimRounds = []time.Duration{2 * time.Second, 10 * time.Second, 30 * time.Second}

// trimmer gives memory back to the system after large messages. Without
// it a burst of big frames leaves the agent's RSS several times its idle
// size for good: the Go heap keeps the freed spans, and glibc's malloc,
// whose mmap threshold grows with every large free, keeps libzmq's message
// buffers on its heap. Both are returned here, once the burst is over. It
// sleeps until a large message arrives (an idle agent costs nothing).
type trimmer struct {
	lastLarge atomic.Int64 // unix nanos of the last large message
	wake      chan struct{}
}

func newTrimmer() trimmer { return trimmer{wake: make(chan struct{}, 1)} }

func (tr *trimmer) sawLarge() {
	tr.lastLarge.Store(time.Now().UnixNano())
	select {
	case tr.wake <- struct{}{}:
	default:
	}
}

func (tr *trimmer) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-tr.wake:
		}
		for _, after := range trimRounds {
			// Wait until after has passed since the latest large message
			// (a burst that goes on moves the round).
			for {
				d := time.Until(time.Unix(0, tr.lastLarge.Load()).Add(after))
				if d <= 0 {
					break
				}
				select {
				case <-ctx.Done():
					return
				case <-time.After(d):
				}
			}
			debug.FreeOSMemory()
			C.malloc_trim(0)
		}
	}
}
