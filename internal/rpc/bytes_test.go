package rpc

import (
	"context"
	"encoding/hex"
	"io"
	"log/slog"
	"testing"
)

// Byte-exact reply to ping("hi"), as callosum.md records the Python peer.
func TestPingReplyBytes(t *testing.T) {
	req := map[string]string{
		"header": "85a474797065" + "01" + "a46d657468a470696e67" + "a46f6b6579c400" + "a3736571" + "00" + "a37a6970c2",
		"body":   "82a46d657461c400a4626f6479c412" + "82a46172677391a26869a66b7761726773" + "80",
	}
	want := map[string]string{
		"header": "85a474797065" + "02" + "a46d657468a470696e67" + "a46f6b6579c400" + "a3736571" + "00" + "a37a6970c2",
		"body":   "82a46d657461c40190a4626f6479c403a26869",
	}
	s := NewServer(slog.New(slog.NewTextHandler(io.Discard, nil)), "i-x")
	s.Register("ping", func(_ context.Context, c *Call) (any, error) { return c.Args[0], nil })
	h, _ := hex.DecodeString(req["header"])
	b, _ := hex.DecodeString(req["body"])
	out := s.HandleMessage(context.Background(), []byte("p"), h, b)
	if got := hex.EncodeToString(out[1]); got != want["header"] {
		t.Errorf("header %s, want %s", got, want["header"])
	}
	if got := hex.EncodeToString(out[2]); got != want["body"] {
		t.Errorf("body %s, want %s", got, want["body"])
	}
}
