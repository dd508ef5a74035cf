package wire

import (
	"errors"
	"fmt"
	"math/big"

	"github.com/bai-agent/bai-agent/internal/wire/msgpack"
	"github.com/bai-agent/bai-agent/internal/wire/pickle"
	"github.com/google/uuid"
	"github.com/shopspring/decimal"
)

// Decode decodes one application payload (the nested msgpack document of a
// Callosum FUNCTION or RESULT body).
func Decode(b []byte) (any, error) {
	return msgpack.Unmarshal(b, decodeExt)
}

func decodeExt(code int8, data []byte) (any, error) {
	switch code {
	case ExtUUID:
		u, err := uuid.FromBytes(data)
		if err != nil {
			return nil, fmt.Errorf("ext %d (UUID): %w", code, err)
		}
		return u, nil
	case ExtDatetime:
		t, err := DecodeTemporenc(data)
		if err != nil {
			return nil, fmt.Errorf("ext %d (datetime): %w", code, err)
		}
		return t, nil
	case ExtPosixPath, ExtPurePosixPath, ExtAutoDirPath:
		return Path(data), nil
	case ExtDecimal, ExtEnum, ExtImageRef, ExtResourceSlot, ExtSlotName, ExtBinarySize:
		p, err := pickle.Loads(data)
		if err != nil {
			return nil, fmt.Errorf("ext %d: %w", code, err)
		}
		v, err := fromPickle(code, p)
		if err != nil {
			return nil, fmt.Errorf("ext %d: %w", code, err)
		}
		return v, nil
	}
	return msgpack.Ext{Code: code, Data: data}, nil
}

func fromPickle(code int8, p any) (any, error) {
	switch code {
	case ExtDecimal:
		return pyDecimal(p)
	case ExtEnum:
		return pyEnum(p)
	case ExtImageRef:
		return pyImageRef(p)
	case ExtResourceSlot:
		return pyResourceSlot(p)
	case ExtSlotName:
		return pySlotName(p)
	case ExtBinarySize:
		return pyBinarySize(p)
	}
	return nil, fmt.Errorf("no pickle mapping for ext %d", code)
}

func objectOf(p any, module, name string) (*pickle.Object, error) {
	o, ok := p.(*pickle.Object)
	if !ok {
		return nil, fmt.Errorf("expected a %s.%s object, got %T", module, name, p)
	}
	g, ok := o.Class()
	if !ok {
		return nil, fmt.Errorf("expected a %s.%s object, got a call of %T", module, name, o.Callable)
	}
	if name != "" && g.Name != name {
		return nil, fmt.Errorf("expected class %s, got %s", name, g)
	}
	return o, nil
}

func pyDecimal(p any) (decimal.Decimal, error) {
	o, err := objectOf(p, "decimal", "Decimal")
	if err != nil {
		return decimal.Decimal{}, err
	}
	if len(o.Args) != 1 {
		return decimal.Decimal{}, fmt.Errorf("Decimal takes 1 argument, got %d", len(o.Args))
	}
	switch a := o.Args[0].(type) {
	case string:
		d, err := decimal.NewFromString(a)
		if err != nil {
			return decimal.Decimal{}, fmt.Errorf("Decimal(%q): %w", a, err)
		}
		return d, nil
	case int64:
		return decimal.NewFromInt(a), nil
	}
	return decimal.Decimal{}, fmt.Errorf("Decimal argument is %T", o.Args[0])
}

func pyEnum(p any) (Enum, error) {
	o, ok := p.(*pickle.Object)
	if !ok {
		return Enum{}, fmt.Errorf("expected an enum member, got %T", p)
	}
	g, ok := o.Class()
	if !ok {
		return Enum{}, errors.New("enum pickle without a class reference")
	}
	if g.Module == "builtins" && g.Name == "getattr" {
		// CPython 3.11: getattr(cls, "NAME")
		if len(o.Args) != 2 {
			return Enum{}, errors.New("getattr enum pickle needs 2 arguments")
		}
		cls, ok1 := o.Args[0].(pickle.Global)
		name, ok2 := o.Args[1].(string)
		if !ok1 || !ok2 {
			return Enum{}, errors.New("getattr enum pickle has unexpected arguments")
		}
		class := cls.String()
		return Enum{Class: class, Name: name, Value: enumValueFromName(class, name)}, nil
	}
	if len(o.Args) != 1 {
		return Enum{}, fmt.Errorf("enum %s takes 1 argument, got %d", g, len(o.Args))
	}
	switch v := o.Args[0].(type) {
	case string:
		return Enum{Class: g.String(), Value: v}, nil
	case int64:
		return Enum{Class: g.String(), Value: fmt.Sprint(v)}, nil
	}
	return Enum{}, fmt.Errorf("enum %s value is %T", g, o.Args[0])
}

// stateDict merges the state of an object: a dict, or the (dict, slots)
// pair Python uses for classes with __slots__.
func stateDict(state any) pickle.Dict {
	switch s := state.(type) {
	case *pickle.Dict:
		return *s
	case pickle.Tuple:
		var out pickle.Dict
		for _, part := range s {
			if d, ok := part.(*pickle.Dict); ok {
				out = append(out, *d...)
			}
		}
		return out
	}
	return nil
}

func pyImageRef(p any) (ImageRef, error) {
	o, err := objectOf(p, "ai.backend.common.docker", "ImageRef")
	if err != nil {
		return ImageRef{}, err
	}
	st := stateDict(o.State)
	var r ImageRef
	str := func(k string) (string, error) {
		v, ok := st.Get(k)
		if !ok || v == nil {
			return "", nil
		}
		s, ok := v.(string)
		if !ok {
			return "", fmt.Errorf("ImageRef.%s is %T, not str", k, v)
		}
		return s, nil
	}
	for _, f := range []struct {
		k string
		p *string
	}{{"name", &r.Name}, {"project", &r.Project}, {"tag", &r.Tag}, {"registry", &r.Registry}, {"architecture", &r.Architecture}} {
		s, err := str(f.k)
		if err != nil {
			return ImageRef{}, err
		}
		*f.p = s
	}
	if v, ok := st.Get("is_local"); ok {
		b, ok := v.(bool)
		if !ok {
			return ImageRef{}, fmt.Errorf("ImageRef.is_local is %T, not bool", v)
		}
		r.IsLocal = b
	}
	if r.Name == "" {
		return ImageRef{}, errors.New("ImageRef without a name")
	}
	return r, nil
}

func pyResourceSlot(p any) (ResourceSlot, error) {
	o, err := objectOf(p, "ai.backend.common.types", "ResourceSlot")
	if err != nil {
		return nil, err
	}
	data, ok := stateDict(o.State).Get("data")
	if !ok {
		return nil, errors.New("ResourceSlot without data")
	}
	d, ok := data.(*pickle.Dict)
	if !ok {
		return nil, fmt.Errorf("ResourceSlot.data is %T", data)
	}
	out := ResourceSlot{}
	for _, kv := range *d {
		k, ok := kv.Key.(string)
		if !ok {
			if o, isObj := kv.Key.(*pickle.Object); isObj {
				sn, err := pySlotName(o)
				if err != nil {
					return nil, err
				}
				k = string(sn)
			} else {
				return nil, fmt.Errorf("ResourceSlot key is %T", kv.Key)
			}
		}
		switch v := kv.Val.(type) {
		case string:
			dv, err := decimal.NewFromString(v)
			if err != nil {
				return nil, fmt.Errorf("ResourceSlot[%q]: %w", k, err)
			}
			out[k] = dv
		case int64:
			out[k] = decimal.NewFromInt(v)
		case *pickle.Object:
			dv, err := pyDecimal(v)
			if err != nil {
				return nil, fmt.Errorf("ResourceSlot[%q]: %w", k, err)
			}
			out[k] = dv
		default:
			return nil, fmt.Errorf("ResourceSlot[%q] is %T", k, kv.Val)
		}
	}
	return out, nil
}

func pySlotName(p any) (SlotName, error) {
	o, err := objectOf(p, "ai.backend.common.types", "SlotName")
	if err != nil {
		return "", err
	}
	if len(o.Args) >= 1 {
		if s, ok := o.Args[0].(string); ok {
			return SlotName(s), nil
		}
	}
	if v, ok := stateDict(o.State).Get("data"); ok {
		if s, ok := v.(string); ok {
			return SlotName(s), nil
		}
	}
	return "", errors.New("SlotName without a string value")
}

func pyBinarySize(p any) (BinarySize, error) {
	o, err := objectOf(p, "ai.backend.common.types", "BinarySize")
	if err != nil {
		return 0, err
	}
	if len(o.Args) != 1 {
		return 0, fmt.Errorf("BinarySize takes 1 argument, got %d", len(o.Args))
	}
	switch v := o.Args[0].(type) {
	case int64:
		return BinarySize(v), nil
	case *big.Int:
		return 0, errors.New("BinarySize out of range")
	}
	return 0, fmt.Errorf("BinarySize argument is %T", o.Args[0])
}
