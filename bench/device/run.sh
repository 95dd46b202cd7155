#!/usr/bin/env bash
# The GPU measurement. usage: OUT=/path bash bench/device/run.sh   (after `bash bench/device/stash.sh p1` and `... p2`)
# Steps (each tee'd to $OUT/<step>.log, each under a time limit, leftovers of a step killed before the next):
#   0-sanity  GPU, torch, java, imports, a broker via `evalstream kafka start`, one message through it
#   a-gpu-raw      bench --skip-stage, 8192 sentences, 3 repeats
#   b-gpu-stage-w1 bench stage, 1 worker, placements process,worker
#   c-gpu-stage-w4 bench stage, 4 workers, placements server,process
#   d-cpu-stage-w2 bench on the CPU only (CUDA hidden), 2 workers, placements server,process,worker
# Limits follow a cumulative schedule (a step may use what earlier steps left unused); the whole run stays
# within RUN_BUDGET_S (default 440 s) plus at most ~20 s of clean-up.
set -uo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=/dev/null
source "$HERE/env.sh"
: "${OUT:?set OUT to the output folder}"
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
BUDGET=${RUN_BUDGET_S:-440}
PY=$GPU_PYTHON
cd "$REPO" || exit 1
for part in p1 p2; do
  [ -f "$GPU_ROOT/.done-$part" ] || { echo "part $part is not stashed in $GPU_ROOT: run bash bench/device/stash.sh $part" | tee "$OUT/error.log"; exit 2; }
done
STEP=$GPU_ROOT/step.py
cat > "$STEP" <<'PYEOF'
"""Run one measurement step: its output to stdout and to a log, a time limit, and no process left behind.

usage: step.py LOG LIMIT_S -- CMD...
The step's processes (the bench starts its broker and workers in sessions of their own, so `timeout` would not
reach them) are reparented to this process (PR_SET_CHILD_SUBREAPER), and whatever of them is still alive when
the command ends or hits its limit gets SIGTERM, then SIGKILL. Exit code: the command's, 124 on timeout.
"""
import ctypes
import os
import signal
import subprocess
import sys
import threading
import time

log_path, limit = sys.argv[1], float(sys.argv[2])
cmd = sys.argv[sys.argv.index("--") + 1 :]
try:
    ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
except Exception as exc:  # noqa: BLE001
    print(f"[step] no subreaper ({exc}); leftovers may survive", flush=True)

me = os.getpid()


def descendants() -> list[int]:
    kids: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            kids.setdefault(ppid, []).append(int(d))
    out, todo = [], [me]
    while todo:
        for k in kids.get(todo.pop(), []):
            out.append(k)
            todo.append(k)
    return out


def reap_all(grace: float) -> None:
    pids = descendants()
    if not pids:
        return
    print(f"[step] stopping {len(pids)} leftover process(es): {pids}", flush=True)
    for p in pids:
        try:
            os.kill(p, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        try:
            while os.waitpid(-1, os.WNOHANG)[0] > 0:
                pass
        except ChildProcessError:
            pass
        if not descendants():
            return
        time.sleep(0.2)
    for p in descendants():
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass
    time.sleep(0.5)
    try:
        while os.waitpid(-1, os.WNOHANG)[0] > 0:
            pass
    except ChildProcessError:
        pass


started = time.monotonic()
with open(log_path, "ab") as log:
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def pump() -> None:
        assert proc.stdout is not None
        for line in iter(proc.stdout.readline, b""):
            sys.stdout.buffer.write(line)
            sys.stdout.buffer.flush()
            log.write(line)
            log.flush()

    def reap_orphans() -> None:
        # orphans of the step (e.g. a broker whose `evalstream kafka start` exited) are our children now: reap
        # them when they exit, or kill(pid, 0) keeps seeing them and whoever stops them waits for nothing
        while proc.poll() is None:
            for d in os.listdir("/proc"):
                if d.isdigit() and int(d) != proc.pid:
                    try:
                        with open(f"/proc/{d}/stat") as f:
                            fields = f.read().rsplit(")", 1)[1].split()
                        if fields[0] == "Z" and int(fields[1]) == me:
                            os.waitpid(int(d), os.WNOHANG)
                    except (OSError, IndexError, ValueError, ChildProcessError):
                        pass
            time.sleep(0.3)

    t = threading.Thread(target=pump, daemon=True)
    t.start()
    threading.Thread(target=reap_orphans, daemon=True).start()
    try:
        rc = proc.wait(timeout=max(limit, 1.0))
    except subprocess.TimeoutExpired:
        msg = f"\n[step] TIMEOUT after {limit:.0f}s: SIGTERM\n".encode()
        sys.stdout.buffer.write(msg)
        log.write(msg)
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=8)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        rc = 124
    reap_all(grace=10)  # also closes the pipe held by grandchildren, so the pump ends
    t.join(timeout=5)
    msg = f"[step] exit {rc} after {time.monotonic() - started:.1f}s\n".encode()
    sys.stdout.buffer.write(msg)
    log.write(msg)
sys.exit(rc)
PYEOF

T0=$(date +%s)
PLAN=0
SUMMARY=$OUT/summary.txt
: > "$SUMMARY"
# step NAME PLANNED_SECONDS CMD...: runs until T0 + (sum of planned seconds so far), at most BUDGET
step() {
  local name=$1 planned=$2 now limit rc t; shift 2
  PLAN=$((PLAN + planned)); [ "$PLAN" -gt "$BUDGET" ] && PLAN=$BUDGET
  now=$(date +%s); limit=$((T0 + PLAN - now))
  if [ "$limit" -lt 5 ]; then echo "== $name: skipped (no time left)" | tee -a "$SUMMARY"; return; fi
  echo "== $name (limit ${limit}s, run at +$((now - T0))s): $*" | tee "$OUT/$name.log"
  t=$(date +%s)
  touch "$GPU_ROOT/.step-start"
  "$PY" "$STEP" "$OUT/$name.log" "$limit" -- "$@"
  rc=$?
  echo "== $name: exit $rc in $(( $(date +%s) - t ))s (limit ${limit}s)" | tee -a "$SUMMARY"
  if [ "$rc" != 0 ]; then  # the tails of the bench's worker/encoder/broker logs of this step, for the post-mortem
    local d f
    for d in $(find "${TMPDIR:-/tmp}" -maxdepth 1 -name 'evalstream-*' -newer "$GPU_ROOT/.step-start" 2>/dev/null); do
      for f in "$d"/*.log "$d"/kafka/broker.log "$d"/kafka/broker.out; do
        [ -f "$f" ] || continue
        mkdir -p "$OUT/$name-logs"
        tail -n 150 "$f" > "$OUT/$name-logs/$(basename "$d")-$(basename "$f")"
      done
    done
  fi
}

DATA=$BENCH_DATA
BENCH=(bench/embeddings.py --data "$DATA")

step 0-sanity 40 bash -c '
  PS4="+ [\${SECONDS}s] "; set -x
  nvidia-smi -L
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  "$GPU_PYTHON" -c "import torch; print(torch.__version__, torch.cuda.is_available(), torch.cuda.get_device_name() if torch.cuda.is_available() else None)"
  command -v java; java -version
  "$GPU_PYTHON" - <<\PY
import importlib.metadata as md, os, sys
import faust, aiokafka, confluent_kafka, pydantic, pydantic_settings, typer
import streams.worker.app, streams.embedding.backends, streams.embedding.server, streams.embedding.process
from streams.embedding.model import model_dir, cuda_available
from streams.embedding.onnx_export import default_cache_dir
print("python", sys.version.split()[0], "| model", model_dir(), "| cuda", cuda_available(), "| onnx cache", default_cache_dir())
for d in ["torch", "transformers", "sentence-transformers", "tokenizers", "onnxruntime", "onnx", "numpy", "pyarrow", "numba",
          "huggingface-hub", "click", "typer", "faust-streaming", "aiokafka", "confluent-kafka", "pydantic", "typing-extensions",
          "scikit-learn", "narwhals"]:
    try:
        print(f"  {d}=={md.version(d)}")
    except md.PackageNotFoundError:
        print(f"  {d}: not installed")
PY
  D=$GPU_ROOT/sanity-broker; rm -rf "$D"
  BOOT=$(evalstream kafka start --data-dir "$D") || exit 1
  echo "bootstrap $BOOT"
  "$GPU_PYTHON" - "$BOOT" <<\PY
import sys, time, uuid
from confluent_kafka import Consumer, Producer
boot, topic = sys.argv[1], f"sanity-{uuid.uuid4().hex[:8]}"
p = Producer({"bootstrap.servers": boot}); p.produce(topic, b"hello"); assert p.flush(15) == 0
c = Consumer({"bootstrap.servers": boot, "group.id": "sanity", "auto.offset.reset": "earliest"}); c.subscribe([topic])
deadline = time.time() + 15
while time.time() < deadline:
    m = c.poll(1.0)
    if m is not None and not m.error():
        print("consumed", m.value()); break
else:
    sys.exit("nothing consumed")
c.close()
PY
  rc=$?
  evalstream kafka stop --data-dir "$D"
  exit $rc
'

# RUN_SMOKE=1: tiny sizes, to test this script on a small CPU-only machine
if [ "${RUN_SMOKE:-0}" = 1 ]; then
  A=(--skip-stage --sentences 64 --repeats 1)
  B=(--generations 300 --flush 100 --workers 1 --placement process,worker --repeats 1)
  C=(--generations 300 --flush 100 --workers 2 --placement server,process --repeats 1)
  D=(--generations 600 --flush 100 --workers 2 --placement server,process,worker --repeats 1)
else
  A=(--skip-stage --sentences 8192 --repeats 3)
  B=(--generations 8000 --flush 1000 --workers 1 --placement process,worker --repeats 2)
  C=(--generations 24000 --flush 1000 --workers 4 --placement server,process --repeats 2)
  D=(--generations 4000 --flush 500 --workers 2 --placement server,process,worker --repeats 2)
fi

step a-gpu-raw 50 "$PY" "${BENCH[@]}" "${A[@]}"

step b-gpu-stage-w1 100 "$PY" "${BENCH[@]}" "${B[@]}"

step c-gpu-stage-w4 135 "$PY" "${BENCH[@]}" "${C[@]}"

step d-cpu-stage-w2 115 env CUDA_VISIBLE_DEVICES= "$PY" "${BENCH[@]}" "${D[@]}"

echo "== total $(( $(date +%s) - T0 ))s" | tee -a "$SUMMARY"
ls -la "$EVALSTREAM_MODEL_CACHE_DIR"/* > "$OUT/onnx-cache.txt" 2>&1 || true
