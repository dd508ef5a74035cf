package pickle

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/big"
)

// Limits that keep a hostile pickle from using unbounded memory or time.
const (
	maxStack = 4096
	maxMemo  = 4096
	maxOps   = 1 << 16
)

// Global is a reference to a Python object by module and name
// (GLOBAL/STACK_GLOBAL). It is never resolved.
type Global struct {
	Module string
	Name   string
}

// String returns "module.Name".
func (g Global) String() string { return g.Module + "." + g.Name }

// Object is the placeholder for a constructed object: the callable (usually
// a Global) applied to Args by REDUCE or NEWOBJ, with State set by BUILD.
type Object struct {
	Callable any
	Args     []any
	State    any
	NewObj   bool
}

// Class returns the object's class when the callable is a Global.
func (o *Object) Class() (Global, bool) {
	g, ok := o.Callable.(Global)
	return g, ok
}

// KV is one entry of a Dict.
type KV struct {
	Key any
	Val any
}

// Dict is a Python dict with entries in insertion order.
type Dict []KV

// Get returns the value stored under the string key k.
func (d Dict) Get(k string) (any, bool) {
	for _, kv := range d {
		if s, ok := kv.Key.(string); ok && s == k {
			return kv.Val, true
		}
	}
	return nil, false
}

// Tuple is a Python tuple.
type Tuple []any

// List is a Python list (a pointer so APPEND can grow it in place).
type List struct{ Items []any }

// Set is a Python set or frozenset.
type Set struct{ Items []any }

type mark struct{}

// ErrUnsupportedOpcode is wrapped by errors for opcodes outside the subset.
var ErrUnsupportedOpcode = errors.New("pickle: unsupported opcode")

type reader struct {
	b     []byte
	pos   int
	stack []any
	marks []int
	memo  map[uint32]any
}

// Loads interprets a pickle and returns its top-level value.
func Loads(b []byte) (any, error) {
	r := &reader{b: b, memo: map[uint32]any{}}
	for ops := 0; ; ops++ {
		if ops > maxOps {
			return nil, errors.New("pickle: too many opcodes")
		}
		op, err := r.byte1()
		if err != nil {
			return nil, err
		}
		done, err := r.step(op)
		if err != nil {
			return nil, fmt.Errorf("pickle: at offset %d (opcode 0x%02x): %w", r.pos-1, op, err)
		}
		if done {
			if len(r.stack) != 1 {
				return nil, fmt.Errorf("pickle: STOP with %d items on the stack", len(r.stack))
			}
			return r.stack[0], nil
		}
		if len(r.stack) > maxStack {
			return nil, errors.New("pickle: stack too deep")
		}
	}
}

var errTruncated = errors.New("unexpected end of pickle")

func (r *reader) need(n int) ([]byte, error) {
	if n < 0 || len(r.b)-r.pos < n {
		return nil, errTruncated
	}
	out := r.b[r.pos : r.pos+n]
	r.pos += n
	return out, nil
}

func (r *reader) byte1() (byte, error) {
	b, err := r.need(1)
	if err != nil {
		return 0, err
	}
	return b[0], nil
}

func (r *reader) uintN(n int) (uint64, error) {
	b, err := r.need(n)
	if err != nil {
		return 0, err
	}
	switch n {
	case 1:
		return uint64(b[0]), nil
	case 2:
		return uint64(binary.LittleEndian.Uint16(b)), nil
	case 4:
		return uint64(binary.LittleEndian.Uint32(b)), nil
	default:
		return binary.LittleEndian.Uint64(b), nil
	}
}

func (r *reader) bytesN(lenSize int) ([]byte, error) {
	n, err := r.uintN(lenSize)
	if err != nil {
		return nil, err
	}
	if n > uint64(len(r.b)) {
		return nil, errTruncated
	}
	return r.need(int(n))
}

func (r *reader) line() (string, error) {
	for i := r.pos; i < len(r.b); i++ {
		if r.b[i] == '\n' {
			s := string(r.b[r.pos:i])
			r.pos = i + 1
			return s, nil
		}
	}
	return "", errTruncated
}

func (r *reader) push(v any) { r.stack = append(r.stack, v) }

func (r *reader) pop() (any, error) {
	if len(r.stack) == 0 {
		return nil, errors.New("stack underflow")
	}
	v := r.stack[len(r.stack)-1]
	if _, ok := v.(mark); ok {
		return nil, errors.New("unexpected MARK on the stack")
	}
	r.stack = r.stack[:len(r.stack)-1]
	return v, nil
}

func (r *reader) top() (any, error) {
	if len(r.stack) == 0 {
		return nil, errors.New("stack underflow")
	}
	return r.stack[len(r.stack)-1], nil
}

func (r *reader) popMark() ([]any, error) {
	if len(r.marks) == 0 {
		return nil, errors.New("no MARK on the stack")
	}
	m := r.marks[len(r.marks)-1]
	r.marks = r.marks[:len(r.marks)-1]
	items := append([]any{}, r.stack[m+1:]...)
	r.stack = r.stack[:m]
	return items, nil
}

func (r *reader) memoize(idx uint32) error {
	if len(r.memo) >= maxMemo {
		return errors.New("memo too large")
	}
	v, err := r.top()
	if err != nil {
		return err
	}
	r.memo[idx] = v
	return nil
}

func (r *reader) get(idx uint32) error {
	v, ok := r.memo[idx]
	if !ok {
		return fmt.Errorf("memo key %d not found", idx)
	}
	r.push(v)
	return nil
}

func setItems(target any, items []any) error {
	d, ok := target.(*Dict)
	if !ok {
		return fmt.Errorf("SETITEM(S) on %T", target)
	}
	if len(items)%2 != 0 {
		return errors.New("odd number of items for SETITEMS")
	}
	for i := 0; i < len(items); i += 2 {
		*d = append(*d, KV{Key: items[i], Val: items[i+1]})
	}
	return nil
}

func (r *reader) step(op byte) (bool, error) {
	switch op {
	case 0x80: // PROTO
		v, err := r.byte1()
		if err != nil {
			return false, err
		}
		if v > 5 {
			return false, fmt.Errorf("unsupported protocol %d", v)
		}
	case 0x95: // FRAME
		_, err := r.uintN(8)
		return false, err
	case '.': // STOP
		return true, nil
	case '(': // MARK
		r.marks = append(r.marks, len(r.stack))
		r.stack = append(r.stack, mark{})
	case '0': // POP
		_, err := r.pop()
		return false, err
	case '1': // POP_MARK
		_, err := r.popMark()
		return false, err
	case '2': // DUP
		v, err := r.top()
		if err != nil {
			return false, err
		}
		r.push(v)
	case 'N':
		r.push(nil)
	case 0x88:
		r.push(true)
	case 0x89:
		r.push(false)
	case 'J': // BININT
		v, err := r.uintN(4)
		if err != nil {
			return false, err
		}
		r.push(int64(int32(uint32(v))))
	case 'K': // BININT1
		v, err := r.uintN(1)
		if err != nil {
			return false, err
		}
		r.push(int64(v))
	case 'M': // BININT2
		v, err := r.uintN(2)
		if err != nil {
			return false, err
		}
		r.push(int64(v))
	case 0x8a, 0x8b: // LONG1, LONG4
		size := 1
		if op == 0x8b {
			size = 4
		}
		b, err := r.bytesN(size)
		if err != nil {
			return false, err
		}
		if len(b) > 64 {
			return false, errors.New("integer too large")
		}
		r.push(decodeLong(b))
	case 'G': // BINFLOAT
		v, err := r.uintN(8)
		if err != nil {
			return false, err
		}
		b := make([]byte, 8)
		binary.LittleEndian.PutUint64(b, v)
		r.push(math.Float64frombits(binary.BigEndian.Uint64(b)))
	case 0x8c: // SHORT_BINUNICODE
		b, err := r.bytesN(1)
		if err != nil {
			return false, err
		}
		r.push(string(b))
	case 'X': // BINUNICODE
		b, err := r.bytesN(4)
		if err != nil {
			return false, err
		}
		r.push(string(b))
	case 0x8d: // BINUNICODE8
		b, err := r.bytesN(8)
		if err != nil {
			return false, err
		}
		r.push(string(b))
	case 'C': // SHORT_BINBYTES
		b, err := r.bytesN(1)
		if err != nil {
			return false, err
		}
		r.push(append([]byte{}, b...))
	case 'B': // BINBYTES
		b, err := r.bytesN(4)
		if err != nil {
			return false, err
		}
		r.push(append([]byte{}, b...))
	case 0x8e: // BINBYTES8
		b, err := r.bytesN(8)
		if err != nil {
			return false, err
		}
		r.push(append([]byte{}, b...))
	case ')':
		r.push(Tuple{})
	case 0x85, 0x86, 0x87: // TUPLE1..3
		n := int(op-0x85) + 1
		if len(r.stack) < n {
			return false, errors.New("stack underflow")
		}
		t := make(Tuple, n)
		for i := n - 1; i >= 0; i-- {
			v, err := r.pop()
			if err != nil {
				return false, err
			}
			t[i] = v
		}
		r.push(t)
	case 't': // TUPLE
		items, err := r.popMark()
		if err != nil {
			return false, err
		}
		r.push(Tuple(items))
	case ']':
		r.push(&List{})
	case 'l': // LIST
		items, err := r.popMark()
		if err != nil {
			return false, err
		}
		r.push(&List{Items: items})
	case 'a': // APPEND
		v, err := r.pop()
		if err != nil {
			return false, err
		}
		t, err := r.top()
		if err != nil {
			return false, err
		}
		l, ok := t.(*List)
		if !ok {
			return false, fmt.Errorf("APPEND on %T", t)
		}
		l.Items = append(l.Items, v)
	case 'e': // APPENDS
		items, err := r.popMark()
		if err != nil {
			return false, err
		}
		t, err := r.top()
		if err != nil {
			return false, err
		}
		l, ok := t.(*List)
		if !ok {
			return false, fmt.Errorf("APPENDS on %T", t)
		}
		l.Items = append(l.Items, items...)
	case '}':
		r.push(&Dict{})
	case 'd': // DICT
		items, err := r.popMark()
		if err != nil {
			return false, err
		}
		d := &Dict{}
		if err := setItems(d, items); err != nil {
			return false, err
		}
		r.push(d)
	case 's': // SETITEM
		v, err := r.pop()
		if err != nil {
			return false, err
		}
		k, err := r.pop()
		if err != nil {
			return false, err
		}
		t, err := r.top()
		if err != nil {
			return false, err
		}
		return false, setItems(t, []any{k, v})
	case 'u': // SETITEMS
		items, err := r.popMark()
		if err != nil {
			return false, err
		}
		t, err := r.top()
		if err != nil {
			return false, err
		}
		return false, setItems(t, items)
	case 0x8f: // EMPTY_SET
		r.push(&Set{})
	case 0x90: // ADDITEMS
		items, err := r.popMark()
		if err != nil {
			return false, err
		}
		t, err := r.top()
		if err != nil {
			return false, err
		}
		s, ok := t.(*Set)
		if !ok {
			return false, fmt.Errorf("ADDITEMS on %T", t)
		}
		s.Items = append(s.Items, items...)
	case 0x91: // FROZENSET
		items, err := r.popMark()
		if err != nil {
			return false, err
		}
		r.push(&Set{Items: items})
	case 'c': // GLOBAL
		mod, err := r.line()
		if err != nil {
			return false, err
		}
		name, err := r.line()
		if err != nil {
			return false, err
		}
		r.push(Global{Module: mod, Name: name})
	case 0x93: // STACK_GLOBAL
		name, err := r.pop()
		if err != nil {
			return false, err
		}
		mod, err := r.pop()
		if err != nil {
			return false, err
		}
		ms, ok1 := mod.(string)
		ns, ok2 := name.(string)
		if !ok1 || !ok2 {
			return false, errors.New("STACK_GLOBAL needs two strings")
		}
		r.push(Global{Module: ms, Name: ns})
	case 'R', 0x81: // REDUCE, NEWOBJ
		args, err := r.pop()
		if err != nil {
			return false, err
		}
		fn, err := r.pop()
		if err != nil {
			return false, err
		}
		t, ok := args.(Tuple)
		if !ok {
			return false, fmt.Errorf("REDUCE/NEWOBJ arguments are %T, not a tuple", args)
		}
		r.push(&Object{Callable: fn, Args: []any(t), NewObj: op == 0x81})
	case 'b': // BUILD
		state, err := r.pop()
		if err != nil {
			return false, err
		}
		t, err := r.top()
		if err != nil {
			return false, err
		}
		o, ok := t.(*Object)
		if !ok {
			return false, fmt.Errorf("BUILD on %T", t)
		}
		o.State = state
	case 0x94: // MEMOIZE
		return false, r.memoize(uint32(len(r.memo)))
	case 'q': // BINPUT
		v, err := r.uintN(1)
		if err != nil {
			return false, err
		}
		return false, r.memoize(uint32(v))
	case 'r': // LONG_BINPUT
		v, err := r.uintN(4)
		if err != nil {
			return false, err
		}
		return false, r.memoize(uint32(v))
	case 'h': // BINGET
		v, err := r.uintN(1)
		if err != nil {
			return false, err
		}
		return false, r.get(uint32(v))
	case 'j': // LONG_BINGET
		v, err := r.uintN(4)
		if err != nil {
			return false, err
		}
		return false, r.get(uint32(v))
	default:
		return false, fmt.Errorf("%w 0x%02x", ErrUnsupportedOpcode, op)
	}
	return false, nil
}

// decodeLong decodes a little-endian two's complement integer. Values that
// fit int64 are returned as int64, others as *big.Int.
func decodeLong(b []byte) any {
	if len(b) == 0 {
		return int64(0)
	}
	be := make([]byte, len(b))
	for i := range b {
		be[len(b)-1-i] = b[i]
	}
	n := new(big.Int).SetBytes(be)
	if b[len(b)-1]&0x80 != 0 {
		n.Sub(n, new(big.Int).Lsh(big.NewInt(1), uint(8*len(b))))
	}
	if n.IsInt64() {
		return n.Int64()
	}
	return n
}
