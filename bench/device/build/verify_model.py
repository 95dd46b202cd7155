"""Embeddings of the widened fp16 model vs the original, with sentence-transformers, on real conversation turns.
usage: verify_model.py ORIGINAL_DIR WIDENED_DIR DATA_JSONL_GZ [N]"""
import gzip
import json
import random
import re
import sys

import numpy as np
from sentence_transformers import SentenceTransformer
from safetensors.numpy import load_file

orig, wide, data = sys.argv[1:4]
n = int(sys.argv[4]) if len(sys.argv) > 4 else 200
a, b = load_file(f"{orig}/model.safetensors"), load_file(f"{wide}/model.safetensors")
assert a.keys() == b.keys() and all(a[k].dtype == b[k].dtype and a[k].shape == b[k].shape for k in a), "names/dtypes/shapes differ"
print("tensors: same names, dtypes, shapes;", "max abs weight diff", max(float(np.abs(a[k].astype(np.float64) - b[k]).max()) for k in a))
texts = []
with gzip.open(data, "rt") as fh:
    for line in fh:
        texts += [t.strip() for t in re.split(r"\n\n(?:Human|Assistant): ", json.loads(line)["chosen"]) if t.strip()]
random.Random(1).shuffle(texts)
texts = texts[:n]
ea = SentenceTransformer(orig, device="cpu").encode(texts, normalize_embeddings=True, batch_size=32)
eb = SentenceTransformer(wide, device="cpu").encode(texts, normalize_embeddings=True, batch_size=32)
cos = (ea * eb).sum(1)
print(f"{len(texts)} texts: cosine min {cos.min():.8f} mean {cos.mean():.8f}; 1-min = {1 - cos.min():.2e}")
sys.exit(0 if cos.min() > 0.99999 else 1)
