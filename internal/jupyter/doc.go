// Package jupyter is a small Jupyter client for the kernel runner: it
// finds a kernelspec in the image, writes a connection file, launches the
// kernel from the spec's argv and speaks the Jupyter messaging protocol
// (version 5.3) to it over the runner's pure-Go ZMTP (no libzmq, so the
// runner stays a static binary).
//
// Wire format of one message, per channel (shell, control and stdin are
// DEALERs to the kernel's ROUTERs; iopub is a SUB to its PUB):
//
//	[identities...] "<IDS|MSG>" signature header parent_header metadata content [buffers...]
//
// where signature is the hex HMAC-SHA256, under the connection file's
// key, of the four JSON frames header…content in that order ("" with an
// empty key). Incoming messages with a bad signature are dropped.
package jupyter
