package rpc

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/bai-agent/bai-agent/internal/rpc/callosum"
	"github.com/bai-agent/bai-agent/internal/testutil"

	"github.com/bai-agent/bai-agent/internal/wire/msgpack"
)

func call(t *testing.T, s *Server, meth string, seq int64, arg any) ([]byte, []byte) {
	t.Helper()
	h, _ := callosum.EncodeHeader(callosum.Header{Type: callosum.TypeFunction, Meth: meth, Okey: []byte{}, Seq: seq})
	p, _ := msgpack.Marshal(map[string]any{"args": []any{arg}, "kwargs": map[string]any{}})
	return h, callosum.EncodeBody([]byte{}, p)
}

func replyType(t *testing.T, out [][]byte) int64 {
	t.Helper()
	h, _, err := callosum.DecodeHeader(out[1])
	if err != nil {
		t.Fatal(err)
	}
	return h.Type
}

// CANCEL cancels the running handler, which is answered with CANCELLED;
// other calls run concurrently and finish in their own time.
func TestCancelAndConcurrency(t *testing.T) {
	s := NewServer(slog.New(slog.NewTextHandler(io.Discard, nil)), "i-x")
	started := make(chan struct{}, 4)
	s.Register("sleep", func(ctx context.Context, c *Call) (any, error) {
		started <- struct{}{}
		d := time.Duration(c.Args[0].(int64)) * time.Millisecond
		select {
		case <-time.After(d):
			return "slept", nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	})
	ctx := context.Background()
	var wg sync.WaitGroup
	results := make(chan [2]any, 3)
	start := time.Now()
	for i, ms := range []int64{300, 300, 10000} {
		wg.Add(1)
		go func(seq, ms int64) {
			defer wg.Done()
			h, b := call(t, s, "sleep", seq, ms)
			out := s.HandleMessage(ctx, []byte("peer"), h, b)
			results <- [2]any{seq, replyType(t, out)}
		}(int64(i), ms)
	}
	for i := 0; i < 3; i++ {
		<-started
	}
	// Cancel the long one (seq 2).
	ch, _ := callosum.EncodeHeader(callosum.Header{Type: callosum.TypeCancel, Meth: "sleep", Okey: []byte{}, Seq: int64(2)})
	if out := s.HandleMessage(ctx, []byte("peer"), ch, callosum.EncodeBody([]byte{0x90}, nil)); out != nil {
		t.Fatal("CANCEL itself got a reply")
	}
	wg.Wait()
	close(results)
	got := map[int64]int64{}
	for r := range results {
		got[r[0].(int64)] = r[1].(int64)
	}
	if got[0] != callosum.TypeResult || got[1] != callosum.TypeResult || got[2] != callosum.TypeCancelled {
		t.Fatalf("reply types %v", got)
	}
	if el := time.Since(start); el > testutil.Slow(2*time.Second) {
		t.Fatalf("calls did not run concurrently (%s)", el)
	}
}
