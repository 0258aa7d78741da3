# Build, run and test cloudtrail_quarantine. Needs only Go, gcc and make.
GO      ?= go
CC      ?= gcc
SO      := build/out_cloudtrail_quarantine.so
HARNESS := build/harness
CLI     := build/cloudtrail-quarantine
GOSRC   := $(shell find . -name '*.go' -not -path './build/*') go.mod go.sum

# Go's SIMD experiment gives the prefilter its vectorised sweep
# (internal/pairs): every build and test here has it. A build without it
# gives the same answers, about a tenth slower on the scan's clean archive.
GOEXPERIMENT ?= simd
export GOEXPERIMENT

.PHONY: all arm64 run test bench fuzz clean

all: $(SO) $(CLI)

# -trimpath keeps build paths out of the shipped binary; -s -w drops the
# symbol tables (a third of the size; Go panics still print stack traces).
$(SO): $(GOSRC)
	CGO_ENABLED=1 $(GO) build -buildmode=c-shared -trimpath -ldflags "-s -w" -o $@ ./plugin

# The offline scan (issue #10): the same detect/ and alert/, no cgo.
$(CLI): $(GOSRC)
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w" -o $@ ./cmd/cloudtrail-quarantine

# Edge collectors are often ARM: cross-build with Debian's aarch64 gcc
# (installed when missing). make test runs the end-to-end fixtures through
# this .so in the arm64 harness under qemu-user.
ARM64_SO      := build/out_cloudtrail_quarantine-arm64.so
ARM64_HARNESS := build/harness-arm64

arm64: $(ARM64_SO) $(ARM64_HARNESS)

$(ARM64_SO): $(GOSRC)
	./build/arm64-tools.sh
	CGO_ENABLED=1 GOOS=linux GOARCH=arm64 CC=aarch64-linux-gnu-gcc $(GO) build -buildmode=c-shared -trimpath -ldflags "-s -w" -o $@ ./plugin

$(ARM64_HARNESS): test/harness/host/harness.c
	./build/arm64-tools.sh
	aarch64-linux-gnu-gcc -std=gnu11 -O2 -g -Wall -Wextra -pthread -o $@ $< -ldl

# The SQS-compatible server the ship tests run (test/sqsserver): goaws,
# built from the Go module proxy, outside this module's go.mod.
GOAWS_VERSION := v0.4.5
build/goaws:
	@mkdir -p build/goaws-bin
	GOBIN=$(CURDIR)/build/goaws-bin $(GO) install github.com/Admiral-Piett/goaws/app/cmd@$(GOAWS_VERSION)
	mv build/goaws-bin/cmd $@ && rmdir build/goaws-bin

$(HARNESS): test/harness/host/harness.c
	@mkdir -p build
	$(CC) -std=gnu11 -O2 -g -Wall -Wextra -pthread -o $@ $< -ldl

test: $(SO) $(HARNESS) $(CLI)
	$(GO) vet ./...
	$(GO) test -race -count=1 ./...

clean:
	git clean -fdXq build/ # only what is ignored: the tracked packaging files stay

# The main job: build the .so and replay conf/'s sample CloudTrail stream
# through it, with the real Fluent Bit when one is installed, else with the
# harness that stands in for it. Alerts print on stdout, and nothing else
# does (`make run | jq` works): the build's command lines go to stderr.
run:
	@$(MAKE) --no-print-directory $(SO) $(HARNESS) build/sample.chunk >&2
	@if command -v fluent-bit >/dev/null 2>&1; then \
		echo "== replaying conf/sample through $$(command -v fluent-bit)" >&2; \
		CTQ_SAMPLE=$(CURDIR)/conf/sample/cloudtrail.jsonl fluent-bit -e $(CURDIR)/$(SO) -c conf/run.yaml; \
	else \
		echo "== no fluent-bit on the PATH: replaying conf/sample through the harness" >&2; \
		$(HARNESS) -f 0:aws.cloudtrail.sample:build/sample.chunk $(SO); \
	fi

build/sample.chunk: conf/sample/cloudtrail.jsonl $(GOSRC)
	@mkdir -p build
	$(GO) run ./test/cmd/mkchunk $< $@

# Benchmarks (issue #3): medians of 5 runs and the ratios against the
# fluent-bit-go baseline, as the README's Performance table; the scan
# against decompression alone (clean and worst-case archives, alternating
# runs), the responder's tools, Security Lake Parquet and S3 at 20 ms a
# request; ship beside Fluent Bit's tail. About 7 minutes.
bench: $(SO) $(HARNESS) $(CLI)
	@mkdir -p build
	$(GO) test ./test/bench/ -run '^$$' -bench '^Benchmark(Scan|NoCandidate|WatchList|AllQuarantine|Baseline)$$' -benchmem -count 5 | tee build/bench.txt
	$(GO) test ./test/bench/ -run '^$$' -bench 'Plugin2MB|PluginFlush' -benchtime 200x -count 5 | tee -a build/bench.txt
	$(GO) test ./test/bench/ -run '^$$' -bench 'PluginAllQuarantine|PluginDurable' -benchtime 1x -count 5 | tee -a build/bench.txt
	$(GO) test ./test/bench/ -run '^$$' -bench 'PluginMemory10M' -benchtime 1x | tee -a build/bench.txt
	./build/bench-tools.sh
	CGO_ENABLED=1 $(GO) test -tags libdeflate ./test/bench/ -run '^$$' -bench 'ScanVsFloor|Decompress|Lake' -benchtime 3x -count 5 -timeout 30m | tee -a build/bench.txt
	$(GO) test ./test/bench/ -run '^$$' -bench 'Responder|ScanS3' -benchtime 1x -count 3 -timeout 30m | tee -a build/bench.txt
	# ship (issue #18) beside Fluent Bit's tail on the same files; that row
	# needs fluent-bit on the PATH, and says it was not measured without.
	$(GO) test ./test/bench/ -run '^$$' -bench 'Ship' -benchtime 3x -count 3 -v 2>&1 | grep -E '^(Benchmark|    ship_test|--- SKIP|ok|PASS|FAIL)' | tee -a build/bench.txt
	$(GO) run ./test/cmd/benchtable < build/bench.txt

# Each fuzz target for FUZZTIME (default 1m); make test runs their seeds.
FUZZTIME ?= 1m
fuzz:
	$(GO) test ./detect/chunk/ -run '^$$' -fuzz '^FuzzReader$$' -fuzztime $(FUZZTIME)
	$(GO) test ./detect/chunk/ -run '^$$' -fuzz '^FuzzSkipAgreesWithMsgp$$' -fuzztime $(FUZZTIME)
	$(GO) test ./detect/ -run '^$$' -fuzz '^FuzzScan$$' -fuzztime $(FUZZTIME)
	$(GO) test ./detect/ -run '^$$' -fuzz '^FuzzFastAndMapPathsAgree$$' -fuzztime $(FUZZTIME)
	$(GO) test ./detect/ -run '^$$' -fuzz '^FuzzJSONPathsAgree$$' -fuzztime $(FUZZTIME)
	$(GO) test ./detect/ -run '^$$' -fuzz '^FuzzKeylessNamesLoseNothing$$' -fuzztime $(FUZZTIME)
	$(GO) test ./detect/ -run '^$$' -fuzz '^FuzzSplitterPieces$$' -fuzztime $(FUZZTIME)
	$(GO) test ./detect/ -run '^$$' -fuzz '^FuzzSplitterBlocksAgree$$' -fuzztime $(FUZZTIME)
	$(GO) test ./internal/jsonblock/ -run '^$$' -fuzz '^FuzzSkipAgreesWithLoop$$' -fuzztime $(FUZZTIME)
	$(GO) test ./scan/ -run '^$$' -fuzz '^FuzzAccountOfAgreesWithIndex$$' -fuzztime $(FUZZTIME)
	$(GO) test ./detect/ -run '^$$' -fuzz '^FuzzFusedPassAgrees$$' -fuzztime $(FUZZTIME)
	$(GO) test ./detect/ -run '^$$' -fuzz '^FuzzNameAnchorAgrees$$' -fuzztime $(FUZZTIME)
	$(GO) test ./internal/pairs/ -run '^$$' -fuzz '^FuzzSweepAgreesWithLoop$$' -fuzztime $(FUZZTIME)
	$(GO) test ./alert/ -run '^$$' -fuzz '^FuzzEncode$$' -fuzztime $(FUZZTIME)
	$(GO) test ./scan/ -run '^$$' -fuzz '^FuzzGuessedRecordsDecodeAsFramed$$' -fuzztime $(FUZZTIME)
	$(GO) test ./internal/value/ -run '^$$' -fuzz '^FuzzTranscodeAgrees$$' -fuzztime $(FUZZTIME)
	$(GO) test ./alert/ -run '^$$' -fuzz '^FuzzOCSF$$' -fuzztime $(FUZZTIME)
	$(GO) test ./detect/cloudtrail/ -run '^$$' -fuzz '^FuzzParseFlattened$$' -fuzztime $(FUZZTIME)
	$(GO) test ./detect/cloudtrail/ -run '^$$' -fuzz '^FuzzResolveJSON$$' -fuzztime $(FUZZTIME)
	$(GO) test ./detect/cloudtrail/ -run '^$$' -fuzz '^FuzzResolveOCSF$$' -fuzztime $(FUZZTIME)
	$(GO) test ./internal/value/ -run '^$$' -fuzz '^FuzzAppendJSON$$' -fuzztime $(FUZZTIME)
	$(GO) test ./internal/value/ -run '^$$' -fuzz '^FuzzCanonical$$' -fuzztime $(FUZZTIME)
	$(GO) test ./internal/value/ -run '^$$' -fuzz '^FuzzAppendJSONString$$' -fuzztime $(FUZZTIME)
	$(GO) test ./plugin/logx/ -run '^$$' -fuzz '^FuzzLogLine$$' -fuzztime $(FUZZTIME)
