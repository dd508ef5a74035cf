// Package image parses the labels that make a Docker image a Backend.AI
// kernel image (ai.backend.kernelspec, ai.backend.features,
// ai.backend.service-ports, ai.backend.resource.min.*, ai.backend.envs.*,
// ai.backend.runtime-*). Every malformed label is a precise error naming
// the label and the offending part.
package image
