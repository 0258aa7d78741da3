#!/usr/bin/env bash
# Tools `make bench` compares the scan against, as a responder would use
# them: jq, ripgrep (rg -z) and zgrep/zcat (in gzip); and libdeflate's
# headers and library, for the fastest gzip decoder in BenchmarkDecompress
# (through cgo, -tags libdeflate; the scan itself does not use it).
set -euo pipefail
missing=()
command -v jq >/dev/null 2>&1 || missing+=(jq)
command -v rg >/dev/null 2>&1 || missing+=(ripgrep)
command -v zgrep >/dev/null 2>&1 || missing+=(gzip)
[ -f /usr/include/libdeflate.h ] || missing+=(libdeflate-dev)
if [ ${#missing[@]} -gt 0 ]; then
	echo "== installing ${missing[*]} for the scan benchmarks" >&2
	apt-get update -qq && apt-get install -y -qq "${missing[@]}" >/dev/null
fi
command -v zcat >/dev/null
