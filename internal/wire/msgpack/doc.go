// Package msgpack is a small, type-preserving MessagePack codec for the
// Callosum wire.
//
// Backend.AI's peers depend on distinctions that general-purpose Go codecs
// blur: str versus bin (the Callosum order key must be echoed with its
// original type), map keys that are extension values (kernel_image_refs is
// keyed by UUID ext 1), and extension codes the codec has never heard of
// (they must pass through, not fail). Decoded values therefore use a closed
// set of Go types:
//
//	nil, bool, int64, uint64, float32, float64, string, []byte,
//	[]any, Map (ordered key/value pairs), Ext (code + raw payload)
//
// plus whatever an ExtDecoder returns for an extension. The decoder is
// defensive: it bounds nesting depth and never allocates more than the input
// could possibly hold, so a hostile frame gets an error, not a crash.
package msgpack
