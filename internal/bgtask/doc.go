// Package bgtask runs the agent's background tasks (image pulls, commits,
// pushes) with Backend.AI's task ids (32 hex digits), progress reports
// (bgtask_updated with current/total) and terminal events (bgtask_done,
// bgtask_failed, bgtask_cancelled). Tasks are owned by the Manager: Close
// cancels them and waits.
package bgtask
