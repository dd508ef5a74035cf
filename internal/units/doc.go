// Package units parses and formats Backend.AI's BinarySize text ("1g",
// "64m", "1.5 GiB") exactly as ai.backend.common.types.BinarySize does, so
// that resource.txt and config values round-trip with the Python agent.
package units
