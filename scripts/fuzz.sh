#!/usr/bin/env bash
# Fuzzing: one libFuzzer target per reader (fuzz/targets/*.swift), built with -sanitize=fuzzer,address
# against the package's own modules, each run for N seconds from its seed corpus (fuzz/corpus/<target>).
#   scripts/fuzz.sh [SECONDS] [TARGET...]     default: 15 s each, every target
# Exits non-zero on the first finding; the crashing input is kept as .build-fuzz/findings/<target>/crash-*
# (turn it into a regression test in Tests/). Leak checking is off: FoundationXML leaks on its error path. New corpus entries go to .build-fuzz/corpus/<target>, so the
# committed seeds stay small. FUZZ_JOBS=N runs N targets at once (default 1).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-15}"; shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(); for f in fuzz/targets/*.swift; do targets+=("$(basename "$f" .swift)"); done
fi
B=.build-fuzz/release
out=.build-fuzz/bin

# The library modules, instrumented (coverage + ASan); SwiftPM builds them, this script links the targets.
for module in FKPTrain FKPExport FKPDetect; do
    swift build -c release --build-path .build-fuzz --target "$module" \
        -Xswiftc -sanitize=fuzzer,address -Xswiftc -g >/dev/null
done
mkdir -p "$out"
objects=("$B"/FKP*.build/*.o "$B"/COpenCL.build/*.o "$B"/CKernels.build/*.o "$B"/CDetect.build/*.o)
for t in "${targets[@]}"; do
    src="fuzz/targets/$t.swift"
    [ -f "$src" ] || { echo "fuzz: no target $t" >&2; exit 2; }
    if [ ! -x "$out/$t" ] || [ -n "$(find "$src" "$B"/Modules -newer "$out/$t" -print -quit)" ]; then
        swiftc -parse-as-library -O -g -sanitize=fuzzer,address -module-name "fuzz_$t" "$src" \
            -I "$B/Modules" -Xcc -fmodule-map-file=Sources/CPNG/module.modulemap \
            -Xcc -fmodule-map-file=Sources/CJPEG/module.modulemap \
            -Xcc -fmodule-map-file="$B/COpenCL.build/module.modulemap" -I Sources/COpenCL/include \
            -Xcc -fmodule-map-file="$B/CKernels.build/module.modulemap" -I Sources/CKernels/include \
            -Xcc -fmodule-map-file="$B/CDetect.build/module.modulemap" -I Sources/CDetect/include \
            "${objects[@]}" -lpng16 -lturbojpeg -ldl -o "$out/$t" 2>&1 | { grep -v 'Cannot export local symbol' || true; } >&2
        [ "${PIPESTATUS[0]}" -eq 0 ] || { echo "fuzz: cannot build $t" >&2; exit 2; }
    fi
done

# Swift's own crash backtracer runs inside the sanitized process and trips ASan; libFuzzer reports instead.
export SWIFT_BACKTRACE=enable=no
# No leak report at exit either (FoundationXML leaks on its error path); memory errors still abort.
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0"
run_one() {
    local t=$1 corpus=.build-fuzz/corpus/$1 findings=.build-fuzz/findings/$1
    mkdir -p "$corpus" "$findings"
    # -rss_limit_mb: readers must stay proportional to their input; -timeout: no input may take 10 s.
    if "$out/$t" "$corpus" "fuzz/corpus/$t" -max_total_time="$seconds" -max_len=65536 -timeout=10 \
        -rss_limit_mb=2048 -detect_leaks=0 -artifact_prefix="$findings/" -print_final_stats=1 >".build-fuzz/$t.log" 2>&1; then
        local runs; runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' ".build-fuzz/$t.log" | grep -o '[0-9]*$' || echo "?")
        echo "fuzz: $t: $runs executions in ${seconds}s, no finding"
    else
        echo "fuzz: $t: FINDING (see .build-fuzz/$t.log and $findings/)" >&2
        grep -m1 -E 'ERROR|Fatal|deadly|timeout|out-of-memory' ".build-fuzz/$t.log" >&2 || tail -5 ".build-fuzz/$t.log" >&2
        return 1
    fi
}

status=0
jobs_max="${FUZZ_JOBS:-1}"
pids=()
for t in "${targets[@]}"; do
    run_one "$t" & pids+=($!)
    if [ ${#pids[@]} -ge "$jobs_max" ]; then
        wait "${pids[0]}" || status=1; pids=("${pids[@]:1}")
    fi
done
for p in "${pids[@]}"; do wait "$p" || status=1; done
exit $status
