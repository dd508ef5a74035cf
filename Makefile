GO ?= go
export CGO_ENABLED := 1
export CGO_CFLAGS ?= -O2 -g -Wno-deprecated-declarations

.PHONY: build test bench fmt vet clean package gpucheck

# xterm.js for the runner's web terminal is bundled from Debian's
# node-xterm (and libjs-xterm's stylesheet and fit addon) and embedded at
# build time (not committed).
WEBASSETS := internal/krunner/webassets

build:
	$(GO) build -o bin/bai-agent ./cmd/bai-agent
	@$(GO) run ./tools/xtermbundle $(WEBASSETS) || echo "make: no xterm.js bundled (apt-get install node-xterm libjs-xterm): the web terminal page will say so" >&2
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags='-s -w' -o bin/bai-krunner ./cmd/bai-krunner

test:
	./scripts/test.sh

bench:
	$(GO) test -run '^$$' -bench . -benchtime 20x ./internal/rpc/zmq/

fmt:
	gofmt -w $$(git ls-files '*.go')

vet:
	$(GO) vet ./...

# .deb and .rpm in dist/: the binary, systemd units, /etc/backend.ai/agent.toml
# and man pages (packaging/ is its own module, so nfpm stays out of the agent's).
package: build
	rm -rf bin/man dist
	./bin/bai-agent gen-man bin/man
	cd packaging && $(GO) run . -version $$(../bin/bai-agent version | awk '{print $$2}') -bin ../bin/bai-agent -man ../bin/man -out ../dist

# The CUDA checks for a GPU machine (scripts/gpu-check.sh runs it there).
gpucheck:
	$(GO) test -c -o .gpucheck/nvidia.test ./internal/device/nvidia

clean:
	rm -rf bin dist .gpucheck
