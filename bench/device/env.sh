# source bench/device/env.sh — the environment of a run from the stashed bundle (see stash.sh); GPU_ROOT/GPU_SITE/GPU_PYTHON
# may be preset (local tests). Puts the bundled JRE first on PATH (LocalBroker finds `java` with shutil.which).
GPU_ROOT=${GPU_ROOT:-/tmp/gpu}
GPU_SITE=${GPU_SITE:-/tmp/site}
GPU_PYTHON=${GPU_PYTHON:-python3}
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
export GPU_ROOT GPU_SITE GPU_PYTHON REPO
export JAVA_HOME=$GPU_ROOT/jre
export PATH=$GPU_ROOT/bin:$JAVA_HOME/bin:$PATH
export EVALSTREAM_CACHE_DIR=$GPU_ROOT/cache              # kafka-4.2.0/libs/.complete: no Maven
export EVALSTREAM_MODEL_CACHE_DIR=$GPU_ROOT/models       # ONNX export/int8 cache (written on first CPU use)
export PYTHONPATH=$GPU_SITE:$REPO${GPU_EXTRA_PYTHONPATH:+:$GPU_EXTRA_PYTHONPATH}
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1
export HF_HOME=$GPU_ROOT/hf
export BENCH_DATA=$GPU_ROOT/data/hh-rlhf-harmless-base-test.jsonl.gz
unset EVALSTREAM_BOOTSTRAP_SERVERS                        # the bench starts a broker per stage round
mkdir -p "$EVALSTREAM_MODEL_CACHE_DIR" "$HF_HOME"
