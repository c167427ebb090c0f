#!/usr/bin/env bash
# The test suite: release build (the engine is too slow unoptimised), every test target.
# Tests that need ../shared (the full data set) print why and skip when it is absent.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# XCTest only: no Swift Testing suites here, and its "0 tests" summary would be the last line.
exec swift test -c release -Xswiftc -enable-testing --disable-swift-testing "$@"
