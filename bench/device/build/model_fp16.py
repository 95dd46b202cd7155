"""The packaged all-MiniLM-L6-v2 with its float weights as fp16 safetensors (ints as they are), and only the
files loading needs (no README, .gitattributes, data_config.json).
usage: model_fp16.py SRC_MODEL_DIR DST_DIR"""
import json
import shutil
import struct
import sys
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file

src, dst = Path(sys.argv[1]), Path(sys.argv[2])
KEEP = ["config.json", "config_sentence_transformers.json", "modules.json", "sentence_bert_config.json",
        "1_Pooling/config.json", "special_tokens_map.json", "tokenizer.json", "tokenizer_config.json", "vocab.txt"]
if dst.exists():
    shutil.rmtree(dst)
for name in KEEP:
    (dst / name).parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(src / name, dst / name)
with open(src / "model.safetensors", "rb") as f:
    meta = json.loads(f.read(struct.unpack("<Q", f.read(8))[0])).get("__metadata__")
tensors = load_file(src / "model.safetensors")
half = {k: v.astype(np.float16) if v.dtype == np.float32 else v for k, v in tensors.items()}
assert all(v.dtype in (np.float32, np.int64) for v in tensors.values()), {v.dtype for v in tensors.values()}
save_file(half, dst / "model-fp16.safetensors", metadata=meta)
print(f"{len(tensors)} tensors, metadata {meta}; fp16 file {(dst / 'model-fp16.safetensors').stat().st_size} bytes")
