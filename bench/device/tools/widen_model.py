"""Widen model-fp16.safetensors back to fp32 model.safetensors (same tensor names, ints untouched, same metadata).
usage: widen_model.py MODEL_DIR   (idempotent; removes the fp16 file once the fp32 one is written)"""

import json
import os
import struct
import sys
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file

folder = Path(sys.argv[1])
half_path, full = folder / "model-fp16.safetensors", folder / "model.safetensors"
if not half_path.exists():
    if full.exists():
        sys.exit(0)
    sys.exit(f"{half_path} missing")
with open(half_path, "rb") as f:
    meta = json.loads(f.read(struct.unpack("<Q", f.read(8))[0])).get("__metadata__")
half = load_file(half_path)
wide = {k: v.astype(np.float32) if v.dtype == np.float16 else v for k, v in half.items()}
tmp = folder / ".model.safetensors.tmp"
save_file(wide, tmp, metadata=meta)
os.replace(tmp, full)
half_path.unlink()
print(f"widened {len(wide)} tensors to {full} ({full.stat().st_size} bytes)")
