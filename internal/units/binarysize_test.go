package units

import "testing"

func TestParseBinarySize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		err  bool
	}{
		{"0", 0, false},
		{"1073741824", 1 << 30, false},
		{"1g", 1 << 30, false},
		{"1G", 1 << 30, false},
		{"16m", 16 << 20, false},
		{"1.5GiB", 3 << 29, false},
		{"64 MiB", 64 << 20, false},
		{"8G", 8 << 30, false},
		{"100b", 100, false},
		{"2K", 2048, false},
		{"1.5", 0, true},
		{"-1g", 0, true},
		{"abc", 0, true},
		{"1x", 0, true},
		{"", 0, true},
		{"inf", 0, true},
	} {
		got, err := ParseBinarySize(tc.in)
		if (err != nil) != tc.err || got != tc.want {
			t.Errorf("ParseBinarySize(%q) = %d, %v; want %d, err=%v", tc.in, got, err, tc.want, tc.err)
		}
	}
}

func TestFormatBinarySize(t *testing.T) {
	for _, tc := range []struct {
		in   int64
		want string
	}{
		{0, "0"}, {512, "512"}, {1 << 30, "1g"}, {3 << 29, "1.5g"}, {64 << 20, "64m"}, {1024, "1k"}, {1<<30 + 1, "1g"},
	} {
		if got := FormatBinarySize(tc.in); got != tc.want {
			t.Errorf("FormatBinarySize(%d) = %q, want %q", tc.in, got, tc.want)
		}
	}
	if got := FormatBinarySizeIn(1<<30, 'm'); got != "1024m" {
		t.Errorf("got %q", got)
	}
	if got := FormatBinarySizeIn(0, 'm'); got != "0m" {
		t.Errorf("got %q", got)
	}
}
