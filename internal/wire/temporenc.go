package wire

import (
	"errors"
	"fmt"
	"time"
)

// Temporenc (temporenc 0.1.0, as shipped with Backend.AI) for msgpack ext 2.
// Python writes naive datetimes as DTS and aware ones as DTSZ, both with
// microsecond precision, and stores aware values in UTC plus the original
// offset in 15-minute units. Decoding accepts every sub-second precision of
// DTS and DTSZ; the date-only and time-only types are refused because a
// datetime never produces them.

type bitReader struct {
	b   []byte
	pos int // bit position
}

func (r *bitReader) read(n int) (uint64, error) {
	if r.pos+n > len(r.b)*8 {
		return 0, errors.New("temporenc: truncated")
	}
	var v uint64
	for i := 0; i < n; i++ {
		byteIdx := (r.pos + i) / 8
		bit := 7 - (r.pos+i)%8
		v = v<<1 | uint64(r.b[byteIdx]>>bit&1)
	}
	r.pos += n
	return v, nil
}

type bitWriter struct {
	b   []byte
	pos int
}

func (w *bitWriter) write(v uint64, n int) {
	for i := n - 1; i >= 0; i-- {
		if w.pos%8 == 0 {
			w.b = append(w.b, 0)
		}
		if v>>uint(i)&1 == 1 {
			w.b[len(w.b)-1] |= 1 << uint(7-w.pos%8)
		}
		w.pos++
	}
}

// DecodeTemporenc decodes a DTS or DTSZ value. DTS (naive) values are
// returned in UTC; DTSZ values in UTC too, as temporenc 0.1.0 does.
func DecodeTemporenc(b []byte) (time.Time, error) {
	if len(b) == 0 {
		return time.Time{}, errors.New("temporenc: empty")
	}
	r := &bitReader{b: b}
	var zoned bool
	switch {
	case b[0]>>6 == 0b01:
		r.pos = 2
	case b[0]>>5 == 0b111:
		r.pos = 3
		zoned = true
	default:
		return time.Time{}, fmt.Errorf("temporenc: type tag 0x%02x is not DTS or DTSZ", b[0])
	}
	prec, err := r.read(2)
	if err != nil {
		return time.Time{}, err
	}
	year, _ := r.read(12)
	month, _ := r.read(4)
	day, _ := r.read(5)
	hour, _ := r.read(5)
	minute, _ := r.read(6)
	second, err := r.read(6)
	if err != nil {
		return time.Time{}, err
	}
	var nsec uint64
	switch prec {
	case 0:
		v, err := r.read(10)
		if err != nil {
			return time.Time{}, err
		}
		nsec = v * 1e6
	case 1:
		v, err := r.read(20)
		if err != nil {
			return time.Time{}, err
		}
		nsec = v * 1e3
	case 2:
		v, err := r.read(30)
		if err != nil {
			return time.Time{}, err
		}
		nsec = v
	}
	if zoned {
		if _, err := r.read(7); err != nil {
			return time.Time{}, err
		}
	}
	if year == 4095 || month == 15 || day == 31 || hour == 31 || minute == 63 || second == 63 {
		return time.Time{}, errors.New("temporenc: datetime with missing components")
	}
	if month > 11 || day > 30 || hour > 23 || minute > 59 || second > 60 || nsec >= 1e9 {
		return time.Time{}, errors.New("temporenc: component out of range")
	}
	return time.Date(int(year), time.Month(month+1), int(day+1), int(hour), int(minute), int(second), int(nsec), time.UTC), nil
}

// EncodeTemporenc writes t as DTSZ with microsecond precision: UTC
// components plus t's offset, exactly as temporenc 0.1.0 packs an aware
// datetime.
func EncodeTemporenc(t time.Time) ([]byte, error) {
	_, off := t.Zone()
	if off%(15*60) != 0 {
		return nil, fmt.Errorf("temporenc: offset %ds is not a multiple of 15 minutes", off)
	}
	u := t.UTC()
	if u.Year() < 0 || u.Year() > 4094 {
		return nil, fmt.Errorf("temporenc: year %d out of range", u.Year())
	}
	w := &bitWriter{}
	w.write(0b111, 3)
	w.write(0b01, 2)
	w.write(uint64(u.Year()), 12)
	w.write(uint64(u.Month()-1), 4)
	w.write(uint64(u.Day()-1), 5)
	w.write(uint64(u.Hour()), 5)
	w.write(uint64(u.Minute()), 6)
	w.write(uint64(u.Second()), 6)
	w.write(uint64(u.Nanosecond()/1000), 20)
	w.write(uint64(off/(15*60)+64), 7)
	// pad to the byte boundary (70 bits -> 9 bytes)
	for w.pos%8 != 0 {
		w.write(0, 1)
	}
	return w.b, nil
}
