// Package identity chooses the agent id of a node whose agent.toml has no
// [agent] id, the way Backend.AI's Python agent does
// (src/ai/backend/common/identity.py, get_instance_id), so that swapping
// the Python agent for bai-agent on the same machine keeps the id the
// manager knows.
//
// Detection first asks which cloud's instance metadata service answers at
// the metadata base URL (169.254.169.254 by default), probing the three
// known ones concurrently and taking the first valid answer, all under one
// short deadline (DefaultDetectTimeout, upstream's 1 s):
//
//	AWS    GET /latest/meta-data/                              200, the listing names instance-id
//	Azure  GET /metadata/instance/compute?api-version=2021-02-01
//	       with "Metadata: true"                               200, a JSON object with vmId
//	GCP    GET /computeMetadata/v1/instance/id
//	       with "Metadata-Flavor: Google"                      200, a decimal number
//
// The cloud that answered then gives the id, each request under its own
// deadline (DefaultFetchTimeout):
//
//	AWS    /latest/meta-data/instance-id, as it is ("i-0123456789abcdef0")
//	Azure  /metadata/instance?api-version=2021-02-01: "i-" + compute.name + "-" +
//	       base32 (RFC 4648, lower case) of the last 5 bytes of compute.vmId (a UUID)
//	GCP    /computeMetadata/v1/instance/id and .../instance/name: "i-" + name + "-" +
//	       base32 (lower case) of the last 5 bytes of the id as a big-endian uint64
//
// When no cloud answers, or the answer cannot be used, the id is "i-" +
// the host name, as upstream's fallback. Nothing is written to disk:
// upstream keeps no id file either, and detects again at every start.
//
// Deliberate differences from upstream, none of which changes an id
// upstream would choose on a healthy instance:
//   - AWS is asked without an IMDSv2 session token, as upstream asks. On an
//     instance that requires IMDSv2 upstream's probe gets 401 and its id is
//     "i-" + host name; bai-agent chooses the same id, so a swap keeps it.
//   - Every request, not only the connection, runs under a deadline.
//   - When GCP answers the id but not the name, upstream produces
//     "i-None-<hash>"; bai-agent falls back to "i-" + host name.
//   - An empty instance-id answer from AWS falls back to the host name
//     instead of giving an empty id.
//   - No proxy from the environment is used (aiohttp's default, too).
package identity
