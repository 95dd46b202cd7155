"""Rewrite wheels with every entry STORED (they compress better inside a tar.xz), and strip the debug info of
their own extension modules (not of libraries grafted by auditwheel, nor of any module with an RPATH: patchelf'd
files and strip don't mix); RECORD gets the new hashes and sizes.
usage: repack_wheels.py SRC_DIR DST_DIR"""
import base64
import csv
import hashlib
import io
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

src, dst = Path(sys.argv[1]), Path(sys.argv[2])
dst.mkdir(parents=True, exist_ok=True)


def strip(name: str, data: bytes) -> bytes:
    if not name.endswith(".so") or ".libs/" in name:
        return data
    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp) / "x.so"
        p.write_bytes(data)
        dyn = subprocess.run(["readelf", "-d", str(p)], capture_output=True, text=True, check=True).stdout
        if "RPATH" in dyn or "RUNPATH" in dyn:
            return data
        subprocess.run(["strip", "--strip-debug", str(p)], check=True)
        out = p.read_bytes()
        return out if len(out) < len(data) - 4096 else data  # already stripped: keep it byte for byte


for whl in sorted(src.glob("*.whl")):
    out = dst / whl.name
    with zipfile.ZipFile(whl) as zin:
        entries = [(i, zin.read(i)) for i in zin.infolist()]
    changed = {}
    new = []
    for info, data in entries:
        d2 = strip(info.filename, data)
        if d2 is not data and d2 != data:
            digest = base64.urlsafe_b64encode(hashlib.sha256(d2).digest()).rstrip(b"=").decode()
            changed[info.filename] = (f"sha256={digest}", str(len(d2)))
        new.append((info, d2))
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as zout:
        for info, data in new:
            if info.filename.endswith(".dist-info/RECORD") and changed:
                rows = list(csv.reader(io.StringIO(data.decode())))
                rows = [[r[0], *changed[r[0]]] if r and r[0] in changed else r for r in rows]
                buf = io.StringIO()
                csv.writer(buf, lineterminator="\n").writerows(rows)
                data = buf.getvalue().encode()
            ni = zipfile.ZipInfo(info.filename, date_time=info.date_time)
            ni.external_attr = info.external_attr
            zout.writestr(ni, data)
    print(f"{whl.name}: {whl.stat().st_size} -> {out.stat().st_size} stored ({len(changed)} modules stripped)")
