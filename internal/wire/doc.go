// Package wire is Backend.AI's application serializer
// (ai.backend.common.msgpack) in Go: msgpack with Backend.AI's extension
// types, several of which carry Python pickles.
//
// Decode turns a payload into plain Go values plus a few typed ones:
//
//	ext 1  uuid.UUID            ext 6  Enum
//	ext 2  time.Time            ext 7  ImageRef
//	ext 3  decimal.Decimal      ext 8  ResourceSlot
//	ext 4/5/17 Path             ext 9  SlotName
//	ext 16 BinarySize           other  msgpack.Ext (passed through)
//
// Maps decode to msgpack.Map so that non-string keys (UUIDs) survive.
package wire
