// Package packaging tests "make package": the .deb installs on this
// machine with its files and systemd units, and is removed cleanly.
package packaging
