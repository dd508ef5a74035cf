// Package event defines every event the agent publishes as a Go type: its
// wire name, its delivery (anycast on the events stream, broadcast on
// events_all, or both), its JSON field names exactly as the manager's
// pydantic models serialise them, and its positional layout for managers up
// to 26.8.1.
//
// Call sites build these structs; they never build payload maps. The
// field names live here and only here, and golden tests compare each type
// against JSON produced by Python from stand-ins of the upstream event
// classes (testdata/gen_events.py), so a renamed or retyped field fails a
// test instead of silently breaking a manager.
//
// The package does no I/O; internal/events delivers what it defines.
package event
