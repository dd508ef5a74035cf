package rpc

import (
	"context"
	"io"
	"log/slog"
	"os"
	"testing"

	"github.com/bai-agent/bai-agent/internal/rpc/callosum"
)

// FuzzHandleMessage feeds arbitrary header and body frames to the
// dispatcher: it must never panic, and every reply must be a well-formed
// header the client can decode.
func FuzzHandleMessage(f *testing.F) {
	h, err := os.ReadFile("../wire/testdata/create_kernels.header.bin")
	if err != nil {
		f.Fatal(err)
	}
	b, err := os.ReadFile("../wire/testdata/create_kernels.body.bin")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(h, b)
	ph, err := callosum.EncodeHeader(callosum.Header{Type: callosum.TypeFunction, Meth: "ping", Okey: []byte{}, Seq: int64(0)})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(ph, callosum.EncodeBody([]byte{}, []byte{0x82, 0xa4, 'a', 'r', 'g', 's', 0x91, 0xa1, 'x', 0xa6, 'k', 'w', 'a', 'r', 'g', 's', 0x80}))
	s := NewServer(slog.New(slog.NewTextHandler(io.Discard, nil)), "i-fuzz")
	s.Register("ping", func(_ context.Context, c *Call) (any, error) {
		v, err := c.Required(0, "msg")
		if err != nil {
			return nil, err
		}
		return asStr(v, "msg")
	})
	s.Register("create_kernels", func(_ context.Context, c *Call) (any, error) {
		_, err := bindCreateRequest(c)
		return nil, err
	})
	f.Fuzz(func(t *testing.T, hdr, body []byte) {
		out := s.HandleMessage(context.Background(), []byte("p"), hdr, body)
		if out == nil {
			return
		}
		if len(out) != 3 {
			t.Fatalf("reply has %d frames", len(out))
		}
		if _, _, err := callosum.DecodeHeader(out[1]); err != nil {
			t.Fatalf("reply header does not decode: %v", err)
		}
		if _, err := callosum.DecodeBody(out[2], false); err != nil {
			t.Fatalf("reply body does not decode: %v", err)
		}
	})
}
