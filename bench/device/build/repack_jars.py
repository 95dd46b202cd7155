"""Copy Kafka's jars, keeping only linux-x86_64 natives in zstd-jni/snappy-java/lz4-java, every entry STORED.

Stored (uncompressed) jars compress far better inside the part's tar.xz than deflated ones; the JVM reads both.
usage: repack_jars.py SRC_LIBS DST_LIBS
"""
import re
import sys
import zipfile
from pathlib import Path

src, dst = Path(sys.argv[1]), Path(sys.argv[2])
dst.mkdir(parents=True, exist_ok=True)
# natives of other platforms: dropped
DROP = [
    (re.compile(r"^zstd-jni-"), re.compile(r"^(aix|darwin|freebsd|win|linux/(?!amd64/))")),
    (re.compile(r"^snappy-java-"), re.compile(r"^org/xerial/snappy/native/(?!Linux/x86_64/)")),
    (re.compile(r"^lz4-java-"), re.compile(r"^net/jpountz/util/(?!linux/amd64/)[^/]+/.+\.(so|dylib|dll|jnilib)$|^net/jpountz/util/linux/(?!amd64/).+\.so$")),
]
before = after = 0
for jar in sorted(src.glob("*.jar")):
    drop = next((d for j, d in DROP if j.match(jar.name)), None)
    out = dst / jar.name
    with zipfile.ZipFile(jar) as zin, zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as zout:
        for info in zin.infolist():
            if drop is not None and drop.match(info.filename) and not info.filename.endswith("/"):
                continue
            data = zin.read(info)
            ni = zipfile.ZipInfo(info.filename, date_time=info.date_time)
            ni.external_attr = info.external_attr
            ni.compress_type = zipfile.ZIP_STORED
            zout.writestr(ni, data)
    before += jar.stat().st_size
    after += out.stat().st_size
    if drop is not None:
        with zipfile.ZipFile(out) as z:
            natives = [n for n in z.namelist() if n.endswith((".so", ".dll", ".dylib", ".jnilib", ".a"))]
        print(f"{jar.name}: natives kept {natives}")
print(f"jars: {before} bytes deflated -> {after} bytes stored")
