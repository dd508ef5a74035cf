// Package krunner is the in-container kernel runner (bai-krunner run): it
// serves Backend.AI's agent↔runner protocol on two ZeroMQ sockets (PULL on
// 2000 for the agent's requests, PUSH on 2001 for output), runs code in a
// runtime (app, shell, python: the image's Jupyter kernel through
// internal/jupyter when it has a python kernelspec, else a helper in the
// image's own interpreter) and batch
// jobs (clean, build, exec), and streams their output as the reference
// runner does. It needs nothing from the image: no libc, no Python for
// itself, no shell unless a command is run through one.
//
// Requests that take a while (code, clean, build, exec) go through one
// FIFO worker, so their replies keep the order the agent relies on;
// status, interrupt, input and completion are answered at once.
package krunner
