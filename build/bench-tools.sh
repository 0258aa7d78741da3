#!/usr/bin/env bash
# Tools `make bench` compares the scan against: jq (zcat is in gzip).
set -euo pipefail
if ! command -v jq >/dev/null 2>&1; then
	echo "== installing jq for the scan benchmarks" >&2
	apt-get update -qq && apt-get install -y -qq jq >/dev/null
fi
command -v zcat >/dev/null
