package wire

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/bai-agent/bai-agent/internal/wire/msgpack"
	"github.com/google/uuid"
	"github.com/shopspring/decimal"
)

// plain renders a decoded value the way ext_values.json (written by the
// Python generator) spells it.
func plain(v any) any {
	switch x := v.(type) {
	case uuid.UUID:
		return x.String()
	case decimal.Decimal:
		return x.String()
	case Enum:
		return x.Class + ":" + x.Value
	case ImageRef:
		return x.Canonical()
	case ResourceSlot:
		m := map[string]any{}
		for k, d := range x {
			m[k] = d.String()
		}
		return m
	case SlotName:
		return string(x)
	case BinarySize:
		return float64(x)
	}
	return fmt.Sprintf("unexpected %T", v)
}

func TestExtValuesFromPython(t *testing.T) {
	raw, err := os.ReadFile("testdata/ext_values.bin")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{}
	js, err := os.ReadFile("testdata/ext_values.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(js, &want); err != nil {
		t.Fatal(err)
	}
	v, err := Decode(raw)
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	m, ok := v.(msgpack.Map)
	if !ok {
		t.Fatalf("top level is %T", v)
	}
	if len(m) != len(want) {
		t.Fatalf("got %d entries, want %d", len(m), len(want))
	}
	for _, kv := range m {
		name := kv.Key.(string)
		t.Run(name, func(t *testing.T) {
			got, _ := json.Marshal(plain(kv.Val))
			exp, _ := json.Marshal(want[name])
			if !bytes.Equal(got, exp) {
				t.Errorf("got %s, want %s", got, exp)
			}
		})
	}
}

func TestImageRefFields(t *testing.T) {
	raw, err := os.ReadFile("testdata/ext_values.bin")
	if err != nil {
		t.Fatal(err)
	}
	v, err := Decode(raw)
	if err != nil {
		t.Fatal(err)
	}
	ir, _ := v.(msgpack.Map).Get("imageref")
	want := ImageRef{Name: "python", Project: "stable", Tag: "3.9-ubuntu20.04", Registry: "cr.backend.ai", Architecture: "x86_64"}
	if ir != want {
		t.Fatalf("got %+v, want %+v", ir, want)
	}
	if ir.(ImageRef).ShortName() != "python" {
		t.Fatal(ir.(ImageRef).ShortName())
	}
}

// Vectors from callosum.md, checked against temporenc 0.1.0.
func TestTemporenc(t *testing.T) {
	aware := "ebf40046 20a0000d 00"
	naive := "57e8008c 41400018"
	for _, tc := range []struct {
		name, hex string
		want      time.Time
	}{
		{"aware", aware, time.Date(2024, 1, 2, 3, 4, 5, 6000, time.UTC)},
		{"naive", naive, time.Date(2024, 1, 2, 3, 4, 5, 6000, time.UTC)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, _ := hex.DecodeString(stripSpaces(tc.hex))
			got, err := DecodeTemporenc(b)
			if err != nil {
				t.Fatal(err)
			}
			if !got.Equal(tc.want) {
				t.Fatalf("got %v want %v", got, tc.want)
			}
		})
	}
	enc, err := EncodeTemporenc(time.Date(2024, 1, 2, 3, 4, 5, 6000, time.UTC))
	if err != nil {
		t.Fatal(err)
	}
	if hex.EncodeToString(enc) != stripSpaces(aware) {
		t.Fatalf("encode: got %x want %s", enc, stripSpaces(aware))
	}
	if _, err := DecodeTemporenc([]byte{0x80, 0, 0}); err == nil {
		t.Fatal("date-only value accepted")
	}
}

func stripSpaces(s string) string { return string(bytes.ReplaceAll([]byte(s), []byte(" "), nil)) }

func TestDecodeRejectsBadInput(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []byte
	}{
		{"truncated map", []byte{0x82, 0xa1, 'a'}},
		{"bad uuid", []byte{0xd4, 0x01, 0x00}},
		{"huge str length", []byte{0xdb, 0xff, 0xff, 0xff, 0xff}},
		{"pickle with os.system", append([]byte{0xc7, 30, 0x03}, []byte("\x80\x05cos\nsystem\n\x8c\x02id\x85R.\x00\x00\x00\x00\x00\x00\x00\x00\x00")...)},
		{"unsupported pickle opcode", []byte{0xc7, 3, 0x03, 0x80, 0x05, 'i'}},
		{"deep nesting", bytes.Repeat([]byte{0x91}, 1000)},
		{"trailing bytes", []byte{0xc0, 0xc0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if v, err := Decode(tc.in); err == nil {
				t.Fatalf("accepted: %#v", v)
			}
		})
	}
}

// A datetime leaves as ext 2 with temporenc 0.1.0's bytes and reads back.
func TestDatetimeExt(t *testing.T) {
	ts := time.Date(2024, 1, 2, 3, 4, 5, 6000, time.UTC)
	b, err := msgpack.Marshal(Datetime(ts))
	if err != nil {
		t.Fatal(err)
	}
	if want := "c70902" + "ebf4004620a0000d00"; hex.EncodeToString(b) != want {
		t.Fatalf("got %x, want %s", b, want)
	}
	v, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if got, ok := v.(time.Time); !ok || !got.Equal(ts) {
		t.Fatalf("round trip: %v", v)
	}
}
