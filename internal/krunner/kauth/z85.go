package kauth

import "fmt"

// Z85 (ZeroMQ RFC 32), the text form of CURVE keys, here without libzmq
// because the runner is a static binary.
const z85Chars = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#"

// Z85Encode encodes b, whose length must be a multiple of 4.
func Z85Encode(b []byte) string {
	out := make([]byte, 0, len(b)*5/4)
	for i := 0; i+4 <= len(b); i += 4 {
		v := uint32(b[i])<<24 | uint32(b[i+1])<<16 | uint32(b[i+2])<<8 | uint32(b[i+3])
		var c [5]byte
		for j := 4; j >= 0; j-- {
			c[j] = z85Chars[v%85]
			v /= 85
		}
		out = append(out, c[:]...)
	}
	return string(out)
}

// Z85Decode decodes s, whose length must be a multiple of 5.
func Z85Decode(s string) ([]byte, error) {
	if len(s)%5 != 0 {
		return nil, fmt.Errorf("z85: length %d is not a multiple of 5", len(s))
	}
	var rev [256]int16
	for i := range rev {
		rev[i] = -1
	}
	for i := 0; i < len(z85Chars); i++ {
		rev[z85Chars[i]] = int16(i)
	}
	out := make([]byte, 0, len(s)*4/5)
	for i := 0; i < len(s); i += 5 {
		var v uint64
		for j := 0; j < 5; j++ {
			d := rev[s[i+j]]
			if d < 0 {
				return nil, fmt.Errorf("z85: invalid character %q", s[i+j])
			}
			v = v*85 + uint64(d)
		}
		if v > 0xFFFFFFFF {
			return nil, fmt.Errorf("z85: group %q overflows", s[i:i+5])
		}
		out = append(out, byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
	}
	return out, nil
}
