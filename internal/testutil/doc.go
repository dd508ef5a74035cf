// Package testutil holds the integration-test helpers: guards that fail
// under CI=true (or AGENT_REQUIRE_INTEGRATION=1) instead of skipping when a
// real service is missing, and the builder of the locally imported kernel
// test image (busybox-static plus the testkernel workload, labelled like a
// Backend.AI image).
package testutil
