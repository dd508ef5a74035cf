// Package events reports to the control plane through Redis exactly as
// the Python agent does: anycast events on the "events" stream (DB 4,
// XADD MAXLEN ~ 128, fields name/source/payload), broadcasts on the
// "events_all" channel, the heartbeat, and the other keys the manager
// reads (stat, live, image and container-log databases).
//
// Nothing is lost while Redis is away: every event except the heartbeat is
// appended to a durable on-disk outbox first and delivered in order by one
// goroutine, which retries until Redis answers again; an agent restart
// replays what was not delivered. The heartbeat has its own goroutine and
// connection, is never queued (the latest wins), and survives any Redis
// failure.
package events
