GO ?= go
export CGO_ENABLED := 1

.PHONY: build test bench fmt vet clean

build:
	$(GO) build -o bin/bai-agent ./cmd/bai-agent

test:
	./scripts/test.sh

bench:
	$(GO) test -run '^$$' -bench . -benchtime 20x ./internal/rpc/zmq/

fmt:
	gofmt -w $$(git ls-files '*.go')

vet:
	$(GO) vet ./...

clean:
	rm -rf bin
