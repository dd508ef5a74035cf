// Package demoimage builds a Backend.AI kernel image from the host's own
// Debian Python (python3.11, its standard library and the shared libraries
// they load, plus busybox for /bin/sh), with no registry: a person can try
// code execution on an offline machine, and the tests use the same image.
package demoimage
