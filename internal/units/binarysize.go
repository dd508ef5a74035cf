package units

import (
	"fmt"
	"math/big"
	"strings"

	"github.com/shopspring/decimal"
)

var suffixMultiplier = map[byte]int64{
	'k': 1 << 10, 'm': 1 << 20, 'g': 1 << 30, 't': 1 << 40, 'p': 1 << 50, 'e': 1 << 60,
}

var suffixes = []string{"", "k", "m", "g", "t", "p", "e"}

var endings = []string{"ibytes", "ibyte", "ib", "bytes", "byte", "b"}

// ParseBinarySize parses "1073741824", "1g", "1G", "1.5GiB", "64 MiB",
// "16m" into bytes. Fractional results are truncated like Python's int().
// Infinity and negative sizes are refused.
func ParseBinarySize(s string) (int64, error) {
	orig := s
	s = strings.ReplaceAll(strings.TrimSpace(s), "_", "")
	if s == "" {
		return 0, fmt.Errorf("empty size")
	}
	if d, err := decimal.NewFromString(s); err == nil && !strings.ContainsAny(s, "eE") {
		if !d.IsInteger() {
			return 0, fmt.Errorf("size %q: fractional bytes are not allowed", orig)
		}
		if d.IsNegative() {
			return 0, fmt.Errorf("size %q is negative", orig)
		}
		if !d.BigInt().IsInt64() {
			return 0, fmt.Errorf("size %q is too large", orig)
		}
		return d.IntPart(), nil
	}
	low := strings.ToLower(s)
	stem := low
	for _, e := range endings {
		if strings.HasSuffix(low, e) {
			stem = strings.TrimSpace(strings.TrimSuffix(low, e))
			break
		}
	}
	if stem == "" {
		return 0, fmt.Errorf("size %q has no number", orig)
	}
	suffix := stem[len(stem)-1]
	mult, ok := suffixMultiplier[suffix]
	num := strings.TrimSpace(stem[:len(stem)-1])
	if !ok {
		if stem == low {
			return 0, fmt.Errorf("size %q has an unknown unit", orig)
		}
		// "100b" / "100 bytes"
		mult, num = 1, stem
	}
	d, err := decimal.NewFromString(num)
	if err != nil {
		return 0, fmt.Errorf("size %q is not a number with a unit (k, m, g, t, p, e)", orig)
	}
	if d.IsNegative() {
		return 0, fmt.Errorf("size %q is negative", orig)
	}
	v := d.Mul(decimal.NewFromInt(mult)).Truncate(0)
	if !v.BigInt().IsInt64() {
		return 0, fmt.Errorf("size %q is too large", orig)
	}
	return v.IntPart(), nil
}

func quantize(v, mult int64) string {
	d := decimal.NewFromInt(v).Div(decimal.NewFromInt(mult))
	if d.IsInteger() {
		return d.String()
	}
	// Python: quantize(Decimal(".00")).normalize() -> round half even to
	// two places, trailing zeros stripped.
	r := d.RoundBank(2)
	return r.String()
}

// FormatBinarySize formats like f"{BinarySize(v):s}": the largest unit that
// keeps the value >= 1, lower-case suffix, no space ("1g", "1.5g", "512").
func FormatBinarySize(v int64) string {
	idx := 0
	for scale := new(big.Int).SetInt64(v); scale.Cmp(big.NewInt(1024)) >= 0 && idx < len(suffixes)-1; idx++ {
		scale.Div(scale, big.NewInt(1024))
	}
	if idx == 0 {
		return fmt.Sprint(v)
	}
	return quantize(v, int64(1)<<(10*idx)) + suffixes[idx]
}

// FormatBinarySizeIn formats like f"{BinarySize(v):m}" (a fixed unit).
func FormatBinarySizeIn(v int64, unit byte) string {
	mult, ok := suffixMultiplier[unit]
	if !ok {
		return fmt.Sprint(v)
	}
	return quantize(v, mult) + string(unit)
}
