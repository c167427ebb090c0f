#!/usr/bin/env bash
# Side-by-side speed of fkp-batch and PyTorch on the same nets (net1, net2), same shapes, same protocol.
#
#   bench/compare.sh [fkp-batch bench options...]      e.g. bench/compare.sh --device cpu --threads 2
#
# 1. builds fkp-batch in release (swift build -c release),
# 2. runs `.build/release/fkp-batch bench --format json "$@"`,
# 3. then (never at the same time: the two would share the cores) `python3 bench/pytorch_reference.py`,
# 4. prints a table: s/epoch, inference img/s and GFLOP/s of each, with fkp/pytorch ratios.
#
# --threads, --images, --models and --batch1-images given here go to both benchmarks; everything else only to fkp-batch.
# PyTorch defaults to 2 threads when --threads is not given (fkp-batch to every core).
#
# Environment:
#   FKP_BENCH_JSON=file      debug: skip the build and the fkp-batch run, read its JSON lines from file
#   PYTORCH_BENCH_JSON=file  debug: skip the PyTorch run, read its JSON lines from file
#   PYTORCH_ARGS="..."       extra options for pytorch_reference.py (e.g. "--repeat 5")
#   PYTHON=python3           the interpreter with torch installed
#   KEEP_JSON=dir            also keep both raw JSON outputs in dir (fkp-batch.jsonl, pytorch.jsonl)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
cd "$root"
PYTHON="${PYTHON:-python3}"

# Options shared by both benchmarks.
shared=()
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
    a="${args[i]}"
    case "$a" in
        --threads|--images|--models|--batch1-images)
            if ((i + 1 < ${#args[@]})); then shared+=("$a" "${args[i + 1]}"); fi ;;
        --threads=*|--images=*|--models=*|--batch1-images=*)
            shared+=("$a") ;;
    esac
done

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

warn_if_busy() {
    # Two processes on 2 cores halve each other: say so when something else is running.
    local load
    load="$(cut -d' ' -f1 /proc/loadavg 2>/dev/null || echo 0)"
    if awk -v l="$load" 'BEGIN { exit !(l > 0.7) }'; then
        echo "compare.sh: warning: load average $load before $1: other processes are running, numbers will be noisy" >&2
    fi
}

if [[ -n "${FKP_BENCH_JSON:-}" ]]; then
    echo "compare.sh: FKP_BENCH_JSON set: reading fkp-batch results from $FKP_BENCH_JSON (no build, no run)" >&2
    cp "$FKP_BENCH_JSON" "$tmp/fkp.jsonl"
else
    echo "compare.sh: swift build -c release" >&2
    swift build -c release >&2
    warn_if_busy "fkp-batch bench"
    echo "compare.sh: .build/release/fkp-batch bench --format json $*" >&2
    .build/release/fkp-batch bench --format json "$@" > "$tmp/fkp.jsonl"
fi

if [[ -n "${PYTORCH_BENCH_JSON:-}" ]]; then
    echo "compare.sh: PYTORCH_BENCH_JSON set: reading PyTorch results from $PYTORCH_BENCH_JSON (no run)" >&2
    cp "$PYTORCH_BENCH_JSON" "$tmp/pytorch.jsonl"
else
    warn_if_busy "the PyTorch benchmark"
    echo "compare.sh: $PYTHON bench/pytorch_reference.py ${shared[*]:-} ${PYTORCH_ARGS:-}" >&2
    # shellcheck disable=SC2086  # PYTORCH_ARGS is split into words on purpose
    "$PYTHON" bench/pytorch_reference.py ${shared[@]+"${shared[@]}"} ${PYTORCH_ARGS:-} > "$tmp/pytorch.jsonl"
fi

if [[ -n "${KEEP_JSON:-}" ]]; then
    mkdir -p "$KEEP_JSON"
    cp "$tmp/fkp.jsonl" "$KEEP_JSON/fkp-batch.jsonl"
    cp "$tmp/pytorch.jsonl" "$KEEP_JSON/pytorch.jsonl"
fi

"$PYTHON" - "$tmp/fkp.jsonl" "$tmp/pytorch.jsonl" <<'PY'
import json, sys

def read(path, impl):
    rows = []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line.startswith("{"):
                continue  # not a result line (a stray log line on stdout)
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                print(f"compare.sh: {path}:{n}: bad JSON ({e}); line skipped", file=sys.stderr)
                continue
            if obj.get("impl", impl) == impl:
                rows.append(obj)
    return rows

fkp = read(sys.argv[1], "fkp-batch")
pt = {r["model"]: r for r in read(sys.argv[2], "pytorch")}
if not fkp:
    sys.exit("compare.sh: fkp-batch printed no JSON result lines")
if not pt:
    sys.exit("compare.sh: the PyTorch benchmark printed no JSON result lines")

def num(x, fmt):
    return "-" if x is None else format(x, fmt)

def ratio(a, b):
    return None if a is None or b in (None, 0) else a / b

headers = ["model", "fkp device", "thr fkp/pt",
           "fkp s/ep", "pt s/ep", "fkp/pt",
           "fkp trainGF", "pt trainGF",
           "fkp img/s", "pt img/s", "fkp/pt",
           "fkp inferGF", "pt inferGF",
           "fkp b1 img/s", "pt b1 img/s", "fkp/pt"]
table = []
for r in fkp:
    p = pt.get(r["model"], {})
    fe, pe = r.get("epoch_seconds"), p.get("epoch_seconds")
    fi, pi = r.get("infer_images_per_second"), p.get("infer_images_per_second")
    f1, p1 = r.get("infer_batch1_images_per_second"), p.get("infer_batch1_images_per_second")
    table.append([
        r["model"], str(r.get("device", "?")), f'{r.get("threads", "?")}/{p.get("threads", "-")}',
        num(fe, ".3f"), num(pe, ".3f"), num(ratio(fe, pe), ".2f"),
        num(r.get("train_gflops"), ".1f"), num(p.get("train_gflops"), ".1f"),
        num(fi, ".0f"), num(pi, ".0f"), num(ratio(fi, pi), ".2f"),
        num(r.get("infer_gflops"), ".1f"), num(p.get("infer_gflops"), ".1f"),
        num(f1, ".0f"), num(p1, ".0f"), num(ratio(f1, p1), ".2f"),
    ])
for m in pt:
    if m not in {r["model"] for r in fkp}:
        print(f"compare.sh: PyTorch measured {m} but fkp-batch did not", file=sys.stderr)

widths = [max(len(h), *(len(row[i]) for row in table)) for i, h in enumerate(headers)]
def line(cells):
    return "  ".join(c.ljust(w) if i < 3 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))
print(line(headers))
print(line(["-" * w for w in widths]))
for row in table:
    print(line(row))
imgs = {r.get("train_images") for r in fkp} | {r.get("train_images") for r in pt.values()}
print()
print(f"training images per epoch: {', '.join(str(i) for i in sorted(x for x in imgs if x is not None))}; batch 128")
print("s/ep fkp/pt < 1: fkp-batch trains faster; img/s fkp/pt > 1: fkp-batch infers faster (batch 128; b1: one image at a time).")
print("GFLOP/s: a training epoch counts 3x the forward FLOPs (net2: 87.5 MFLOP per image), inference 1x.")
PY
