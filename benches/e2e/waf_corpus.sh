#!/usr/bin/env bash
# WAF detection quality: replays benches/waf/attacks.tsv (sqli, xss, traversal, rce, php, java,
# ssti, scanner) and benches/waf/benign.tsv through coregate with `waf = { mode = "block",
# paranoia = PL }` and through nginx + ModSecurity v3 + OWASP CRS at the same paranoia level, both
# in front of one python upstream that answers 200 to everything. Per attack family: the share of
# requests answered 403; for the benign corpus: the share answered 403 (false positives). Each
# value goes in a query parameter, a form body and a JSON body (traversal also raw in the path,
# scanner payloads as the User-Agent); see benches/e2e/waf_corpus.py for the details and
# benches/waf/README.md for the corpora.
#
# Usage: benches/e2e/waf_corpus.sh [--paranoia N] [--only modsec|coregate]
#                                  [--placements query,form,json,path] [--modsec-audit]
# Builds with `cargo build --release` into $CARGO_TARGET_DIR (default target/) unless NO_BUILD=1.
# Prints a markdown table and writes it to benches/results/waf-corpus-<date>[-pl<N>].md; the
# misses and false positives (per engine, family, placement) go to benches/results/waf-misses.txt.
# coregate is reported as n/a when `coregate check` refuses the config (no `waf` key yet), the
# ModSecurity column as n/a when nginx or its module/CRS are not installed. Ports 19811-19813.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
TDIR=${CARGO_TARGET_DIR:-$ROOT/target}
if [ "${NO_BUILD:-0}" != 1 ]; then
  (cd "$ROOT" && cargo build --release -q -p coregate -p coregate-load)
fi
W=$(mktemp -d); trap 'rm -rf $W' EXIT
# The python script starts and stops its own upstream, coregate and nginx (also on errors/^C).
python3 "$ROOT/benches/e2e/waf_corpus.py" --bin "$TDIR/release/coregate" --workdir "$W" "$@"
