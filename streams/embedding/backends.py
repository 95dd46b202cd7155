"""The embedding backends: sentence-transformers on CPU, torch fp16 on CUDA, onnxruntime fp32 or int8.

Choose one with :func:`streams.embedding.encoder.load_encoder`, which also says when each is used.

Usage (needs the model package; ``tests/streams/embedding`` runs it)::

    enc = OnnxEncoder(fp32_path, int8_path, batch_size=32)
    enc.encode(["a sentence"]).shape   # (1, 384)
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from metrics.similarity import EMBEDDING_DIM
from streams.embedding.model import (
    MODEL_NAME,
    ModelNotFoundError,
    check_max_tokens,
    cuda_available,
    length_batches,
    load_tokenizer,
    model_dir,
    offline,
    padded,
    sanitize,
    tokenized,
)


class TorchEncoder:
    """sentence-transformers on CPU (fp32) or CUDA (fp16)."""

    dim = EMBEDDING_DIM

    def __init__(
        self, device: str | None = None, batch_size: int = 32, fp16: bool | None = None, max_tokens: int | None = None
    ) -> None:
        offline()
        from sentence_transformers import SentenceTransformer

        device = device or ("cuda" if cuda_available() else "cpu")
        self.model = SentenceTransformer(str(model_dir()), device=device, local_files_only=True)
        self.model.max_seq_length = check_max_tokens(max_tokens)
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
    thread and copies each batch back before queueing the next, so a fast GPU mostly waits for the CPU. Here the
    whole call is tokenized at once by ``tokenizers.encode_batch`` (parallel Rust threads), sorted by length
    so batches carry little padding, and every batch's mean pooling and L2 normalization run on the device
    into one output tensor, with a single copy back at the end: the CPU queues the next batch while the GPU
    computes. The same mean pooling and normalization as all-MiniLM-L6-v2's own modules; on the CPU in fp32
    it agrees with ``TorchEncoder`` to cosine 1.00000 (tested).
    """

    dim = EMBEDDING_DIM

    def __init__(
        self, device: str | None = None, batch_size: int = 256, fp16: bool | None = None, max_tokens: int | None = None
    ) -> None:
        offline()
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
        self.tokenizer = load_tokenizer(max_tokens)
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

    dim = EMBEDDING_DIM

    def __init__(
        self,
        fp32_path: Path,
        int8_path: Path | None = None,
        batch_size: int = 32,
        int8_min_tokens: int = 64,
        threads: int = 0,
        max_tokens: int | None = None,
    ) -> None:
        import onnxruntime as ort

        self.tokenizer = load_tokenizer(max_tokens)
        # Batches run side by side, one thread each: a multi-threaded intra-op pool makes its threads wait at
        # every operator's barrier.
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
        # Long texts go in smaller batches (at most batch_size texts and batch_size x 24 padded tokens a batch):
        # fixed-size batches pad the long tail with tokens the model computes for nothing.
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
