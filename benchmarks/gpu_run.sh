#!/usr/bin/env bash
# The GPU session's one command, for a bare CUDA machine whose python has torch but not lmdb or
# lpips (docs/gpu_report.md, "The GPU session", has the device call and the wheels to carry):
#
#   benchmarks/gpu_run.sh OUT_DIR [WHEEL_DIR]
#
# 1. installs the wheels of WHEEL_DIR (lmdb) into SITE_DIR and puts it on PYTHONPATH;
# 2. runs the GPU report, bench.py --report WORK_DIR/bench_report --budget_s REPORT_BUDGET_S,
#    which stops before its budget (a report.json already there is continued);
# 3. with what is left of TOTAL_BUDGET_S (at least EVIDENCE_MIN_S), runs evidence.py --preset gpu
#    --models none,mspe --seeds 0 --parallel 2 in WORK_DIR under `timeout` (a later call in the
#    same WORK_DIR resumes its training);
# 4. packs into OUT_DIR at most 8 files of at most 15 MiB, the device's limits on what comes back:
#      gpu_run.log          this script's log: each stage's time, what it brought back
#      bench_report.tar.gz  bench_report/: report.json, report.md, profile.txt, bench.log
#      evidence.tar.gz      evidence/gpu/: report.md, runs.csv, summary.csv, the PNGs and GIFs,
#                           runs/*.json, runs/*.png, runs/*.log (runs/evidence.log: its output)
#      checkpoints.tar.gz   the finished runs' final checkpoints, g_ema and args only (what
#                           evidence.py measures; about 17 MB a run at 64 px); over 15 MiB, in parts
#                           checkpoints.tar.gz.part-0, -1, ...: `cat checkpoints.tar.gz.part-* > checkpoints.tar.gz`
#    Unpacked in the repository root, evidence/gpu/ and checkpoint/ are where
#    `python evidence.py --preset gpu --models none,mspe --seeds 0` looks for them; unpacked in
#    gpu_run/, bench_report/ is where a later call continues the report.
#
# Environment (the defaults fit one 10-minute device command):
#   TOTAL_BUDGET_S=540    the whole script's seconds
#   REPORT_BUDGET_S=480   bench.py's --budget_s (less if the total leaves less; 0: no report)
#   REPORT_GRACE_S=20     past its budget, bench.py is killed (it stops itself before)
#   EVIDENCE_MIN_S=60     evidence.py runs only with this much time left
#   EVIDENCE_KILL_S=15    after its time limit, train.py's seconds to save a checkpoint before a kill
#   PACK_S=30             seconds kept for packing
#   PART_KIB=15360        larger files come back in parts of this size (15 MiB)
#   PYTHON=python3  DEVICE=auto  WORK_DIR=<repository>/gpu_run  SITE_DIR=/tmp/site
#   BENCH_ARGS, EVIDENCE_ARGS: more flags for bench.py and evidence.py, e.g. a tiny CPU rehearsal
#   (tests/test_gpu_run.py); evidence.py's --out stays evidence/gpu
set -euo pipefail

if [[ $# -lt 1 || $# -gt 2 ]]; then
    echo "usage: benchmarks/gpu_run.sh OUT_DIR [WHEEL_DIR]" >&2
    exit 2
fi
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
mkdir -p "$1"
OUT_DIR=$(cd "$1" && pwd)
WHEEL_DIR=${2:-}
TOTAL_BUDGET_S=${TOTAL_BUDGET_S:-540}
REPORT_BUDGET_S=${REPORT_BUDGET_S:-480}
REPORT_GRACE_S=${REPORT_GRACE_S:-20}
EVIDENCE_MIN_S=${EVIDENCE_MIN_S:-60}
EVIDENCE_KILL_S=${EVIDENCE_KILL_S:-15}
PACK_S=${PACK_S:-30}
PART_KIB=${PART_KIB:-15360}
PYTHON=${PYTHON:-python3}
DEVICE=${DEVICE:-auto}
WORK_DIR=${WORK_DIR:-$ROOT/gpu_run}
SITE_DIR=${SITE_DIR:-/tmp/site}
read -r -a bench_extra <<< "${BENCH_ARGS:-}"
read -r -a evidence_extra <<< "${EVIDENCE_ARGS:-}"
# the two 64 px runs train side by side: each is bound by Python and kernel launches, far from
# filling the GPU, and a comparison needs both runs, not one finished and one cut
evidence_flags=(--preset gpu --models none,mspe --seeds 0 --parallel 2 --device "$DEVICE" --out evidence/gpu
    ${evidence_extra[@]+"${evidence_extra[@]}"})
MIB=$((1024 * 1024))

mkdir -p "$WORK_DIR"
WORK_DIR=$(cd "$WORK_DIR" && pwd)
rm -f "$OUT_DIR"/gpu_run.log "$OUT_DIR"/bench_report.tar.gz "$OUT_DIR"/evidence.tar.gz "$OUT_DIR"/checkpoints.tar.gz*
LOG=$OUT_DIR/gpu_run.log
log() { echo "gpu_run: $*" | tee -a "$LOG"; }
stages=()
stage_start=$SECONDS
end_stage() {  # end_stage NAME OUTCOME: log how the stage ended and how long it took
    stages+=("$1 $((SECONDS - stage_start)) s")
    log "$1: $2, $((SECONDS - stage_start)) s"
    stage_start=$SECONDS
}
log "$(date -u '+%Y-%m-%d %H:%M:%S UTC'), total budget ${TOTAL_BUDGET_S} s, work in $WORK_DIR"

# 1. wheels
if [[ -n "$WHEEL_DIR" ]]; then
    shopt -s nullglob
    wheels=("$WHEEL_DIR"/*.whl)
    shopt -u nullglob
    if ((${#wheels[@]} == 0)); then
        log "no .whl files in $WHEEL_DIR: download them as docs/gpu_report.md says, or leave WHEEL_DIR out"
        exit 2
    fi
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE_DIR" \
        "${wheels[@]}"
    export PYTHONPATH=$SITE_DIR${PYTHONPATH:+:$PYTHONPATH}
    end_stage wheels "installed ${#wheels[@]} into $SITE_DIR"
fi
has_lmdb=yes
"$PYTHON" -c "import lmdb" 2> /dev/null || has_lmdb=no
if [[ $has_lmdb == no ]]; then
    log "lmdb is missing: the CUDA tests that import it error and evidence.py cannot write its dataset; carry its" \
        "wheel (docs/gpu_report.md)"
fi

# 2. the GPU report
report_budget=$((TOTAL_BUDGET_S - SECONDS - PACK_S - REPORT_GRACE_S))
if ((report_budget > REPORT_BUDGET_S)); then
    report_budget=$REPORT_BUDGET_S
fi
if ((REPORT_BUDGET_S == 0)); then
    end_stage report "not run: REPORT_BUDGET_S=0"
elif ((report_budget > 0)); then
    status=0
    mkdir -p "$WORK_DIR/bench_report"
    timeout -k 5 $((report_budget + REPORT_GRACE_S)) "$PYTHON" "$ROOT/benchmarks/bench.py" \
        --report "$WORK_DIR/bench_report" --budget_s "$report_budget" --device "$DEVICE" \
        ${bench_extra[@]+"${bench_extra[@]}"} > "$WORK_DIR/bench_report/bench.log" 2>&1 || status=$?
    if [[ -f $WORK_DIR/bench_report/report.md ]]; then
        cat "$WORK_DIR/bench_report/report.md"
    fi
    outcome="bench.py --budget_s $report_budget, exit $status"
    if ((status == 124 || status == 137)); then
        outcome+=": killed $REPORT_GRACE_S s past its budget, report.json holds what it had measured"
    fi
    end_stage report "$outcome"
else
    end_stage report "not run: the total budget leaves no time"
fi

# 3. the evidence
evidence_limit=$((TOTAL_BUDGET_S - SECONDS - PACK_S - EVIDENCE_KILL_S))
if [[ $has_lmdb == no ]]; then
    end_stage evidence "not run: no lmdb"
elif ((evidence_limit < EVIDENCE_MIN_S)); then
    end_stage evidence "not run: ${evidence_limit} s left, fewer than EVIDENCE_MIN_S=${EVIDENCE_MIN_S}"
else
    status=0
    evidence_log=$WORK_DIR/evidence/gpu/runs/evidence.log
    mkdir -p "$(dirname "$evidence_log")"
    (cd "$WORK_DIR" && timeout -k "$EVIDENCE_KILL_S" "$evidence_limit" "$PYTHON" "$ROOT/evidence.py" \
        "${evidence_flags[@]}") > "$evidence_log" 2>&1 || status=$?
    if ((status == 0)); then
        cat "$WORK_DIR/evidence/gpu/report.md"
        end_stage evidence "finished within ${evidence_limit} s"
    elif ((status == 124 || status == 137)); then
        end_stage evidence "stopped by its time limit of ${evidence_limit} s; unfinished runs bring back their logs only"
    else
        tail -n 20 "$evidence_log"
        end_stage evidence "failed, exit $status (runs/evidence.log)"
    fi
fi

# 4. packing
cd "$WORK_DIR"
if [[ -d bench_report ]]; then
    tar -czf "$OUT_DIR/bench_report.tar.gz" bench_report
fi
if [[ -d evidence/gpu ]]; then
    mapfile -t packed < <(find evidence/gpu -maxdepth 2 -type f \( -name '*.md' -o -name '*.csv' -o \
        -name '*.png' -o -name '*.gif' -o -name '*.json' -o -name '*.log' \) | sort)
    if ((${#packed[@]})); then
        tar -czf "$OUT_DIR/evidence.tar.gz" "${packed[@]}"
    fi
fi
rm -rf final
if [[ -d checkpoint ]]; then
    GPU_RUN_ROOT=$ROOT "$PYTHON" - "${evidence_flags[@]}" << 'EOF'
"""The finished runs' final checkpoints with g_ema and args only, under final/: a fifth of a
training checkpoint, and all that evidence.py needs to measure a run."""
import os
import sys

sys.path.insert(0, os.environ["GPU_RUN_ROOT"])
import evidence
from checkpoint import load_checkpoint, save_checkpoint

args = evidence.parse_args(sys.argv[1:])
for model in args.models:
    for seed in args.seeds:
        path = evidence.final_checkpoint(args, model, seed)
        if os.path.exists(path):
            trained = load_checkpoint(path)
            save_checkpoint({"g_ema": trained["g_ema"], "args": trained["args"]}, os.path.join("final", path))
EOF
fi
if [[ -d final/checkpoint ]]; then
    tar -czf "$OUT_DIR/checkpoints.tar.gz" -C final checkpoint
    if (($(stat -c %s "$OUT_DIR/checkpoints.tar.gz") > PART_KIB * 1024)); then
        split -b "${PART_KIB}K" -d -a 1 "$OUT_DIR/checkpoints.tar.gz" "$OUT_DIR/checkpoints.tar.gz.part-"
        rm "$OUT_DIR/checkpoints.tar.gz"
    fi
fi
# within the device's limits, or without the checkpoints
total_bytes=$(cat "$OUT_DIR"/* | wc -c)
count=$(find "$OUT_DIR" -maxdepth 1 -type f | wc -l)
if ((count > 8 || total_bytes > 60 * MIB)); then
    rm -f "$OUT_DIR"/checkpoints.tar.gz*
    log "the checkpoints would pass the device's limits ($count files, $((total_bytes / MIB)) MiB): left behind"
fi
end_stage pack "$(find "$OUT_DIR" -maxdepth 1 -type f | wc -l) files"

joined=$(printf ', %s' "${stages[@]}")
log "stages: ${joined:2}; total $SECONDS s of $TOTAL_BUDGET_S s"
log "brought back in $OUT_DIR:"
for file in "$OUT_DIR"/*; do
    log "  $(basename "$file") $(numfmt --to=iec-i --suffix=B "$(stat -c %s "$file")")"
done
if compgen -G "$OUT_DIR/checkpoints.tar.gz.part-*" > /dev/null; then
    log "join the parts with: cat checkpoints.tar.gz.part-* > checkpoints.tar.gz"
fi
log "unpack evidence.tar.gz and checkpoints.tar.gz in the repository root, bench_report.tar.gz in gpu_run/"
