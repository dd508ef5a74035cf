// Package kuser holds the one rule both the agent and the in-container
// runner apply when nobody named the kernel's uid: user code runs as the
// image's own unprivileged user, never as root. The agent applies it to
// know whom the kernel's files belong to; the runner, when the agent set
// nothing (an old agent, a non-root one).
package kuser
