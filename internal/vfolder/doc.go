// Package vfolder validates vfolder mount requests before anything is
// created: host paths must be absolute, free of "..", and inside a
// configured mount root even after symlinks are resolved; kernel paths must
// stay inside the allowed in-container roots and must not shadow the
// kernel's own /home/work or /home/config.
package vfolder
