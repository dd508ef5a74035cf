// Package fsutil holds the two file-system helpers several parts of the
// agent need: crash-safe file replacement, and the host's mount table.
package fsutil
