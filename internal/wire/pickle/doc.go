// Package pickle reads and writes the small subset of Python pickles that
// Backend.AI puts inside msgpack extension values (Decimal, enums, ImageRef,
// ResourceSlot, SlotName, BinarySize).
//
// The reader is a restricted opcode interpreter: it never imports or calls
// anything, it only builds inert placeholders (Global, Object) that the
// caller interprets by class name. Opcodes outside the needed set, oversized
// lengths and runaway stacks are refused with an error, so a hostile pickle
// cannot crash or stall the agent.
package pickle
