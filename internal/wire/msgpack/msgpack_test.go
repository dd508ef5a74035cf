package msgpack

import (
	"bytes"
	"encoding/hex"
	"testing"
)

func TestRoundTripKeepsTypes(t *testing.T) {
	in := Map{
		{Key: "str", Val: "x"},
		{Key: "bin", Val: []byte{}},
		{Key: []byte("binkey"), Val: int64(-33)},
		{Key: "ext", Val: Ext{Code: 1, Data: make([]byte, 16)}},
		{Key: "list", Val: []any{nil, true, false, int64(1 << 40), uint64(1 << 63), 1.5}},
	}
	b, err := Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	out, err := Unmarshal(b, nil)
	if err != nil {
		t.Fatal(err)
	}
	b2, _ := Marshal(out)
	if !bytes.Equal(b, b2) {
		t.Fatalf("re-encoding differs:\n%x\n%x", b, b2)
	}
	m := out.(Map)
	if _, ok := m[1].Val.([]byte); !ok {
		t.Fatal("bin decoded as something else")
	}
	if _, ok := m[2].Key.([]byte); !ok {
		t.Fatal("bin key lost its type")
	}
}

// Compact integers, as Python's msgpack writes them.
func TestCompactEncoding(t *testing.T) {
	for _, tc := range []struct {
		v    any
		want string
	}{
		{0, "00"}, {127, "7f"}, {128, "cc80"}, {-1, "ff"}, {-33, "d0df"}, {65536, "ce00010000"},
		{"", "a0"}, {[]byte{}, "c400"}, {[]any{}, "90"}, {nil, "c0"},
	} {
		b, err := Marshal(tc.v)
		if err != nil {
			t.Fatal(err)
		}
		if hex.EncodeToString(b) != tc.want {
			t.Errorf("%#v: got %x, want %s", tc.v, b, tc.want)
		}
	}
}

func TestRejects(t *testing.T) {
	for _, in := range []string{"", "c1", "92", "dc0005", "dbffffffff", "c7ff01", "82a161"} {
		b, _ := hex.DecodeString(in)
		if v, err := Unmarshal(b, nil); err == nil {
			t.Errorf("%s accepted as %#v", in, v)
		}
	}
}

func FuzzUnmarshal(f *testing.F) {
	for _, s := range []string{"c0", "82a46d657461c400a4626f6479c412", "91c70503800595", "dc0001c0", "d8011111111111111111111111111111111111"} {
		b, err := hex.DecodeString(s)
		if err != nil {
			f.Fatalf("seed %q: %v", s, err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := Unmarshal(b, nil)
		if err != nil {
			return
		}
		// Whatever decodes must re-encode and decode to the same bytes.
		enc, err := Marshal(v)
		if err != nil {
			t.Fatalf("decoded value does not encode: %v", err)
		}
		v2, err := Unmarshal(enc, nil)
		if err != nil {
			t.Fatalf("re-decode: %v", err)
		}
		enc2, _ := Marshal(v2)
		if !bytes.Equal(enc, enc2) {
			t.Fatalf("unstable round trip")
		}
	})
}
