#!/usr/bin/env bash
# The `readyloop load --report` page in headless Chromium (tests/browser/load_report.e2e.mjs):
# a real --rate run against the real server, stalled with SIGSTOP, then the page opened and its
# plots checked; the screenshot is left at target/load-report.png (a CI artefact). Needs what
# .ci/run installs before it: Debian's chromium and tests/browser's playwright-core.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --quiet
[ -d tests/browser/node_modules/playwright-core ] ||
  (cd tests/browser && npm ci --no-audit --no-fund --loglevel=error)
node tests/browser/load_report.e2e.mjs
