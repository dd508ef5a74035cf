// Package logging builds the agent's slog handler from [logging], as the
// Python agent's config spells it: the console and file drivers (the file
// rotated by size, keeping backup-count old files), the simple, verbose,
// text or JSON format, a global level, and pkg-ns levels per component.
//
// pkg-ns follows the Python agent's meaning: a record is written when its
// level is at least the global level and at least the level of the
// longest pkg-ns key that matches its component ("" and "ai.backend"
// match every record, "events" the records of the events component). So
// pkg-ns quiets a component; to hear one component at DEBUG, set the
// global level to DEBUG and "" to INFO.
package logging
