"""Export the packaged all-MiniLM-L6-v2 weights to ONNX (fp32, then dynamic int8), once, into a cache folder.

Files land in ``<cache_dir>/all-MiniLM-L6-v2-<key>/`` where ``key`` hashes the weights and the exporter and
runtime versions, so an upgrade re-exports instead of loading a stale graph. Nothing is written next to the
model (it lives in site-packages). Each file is written under a temporary name and renamed, so concurrent
workers or an interrupted export never leave a half-written model behind.

sentence-transformers' own ``backend="onnx"`` needs ``optimum-onnx``, whose only release (0.1.0) requires
``transformers<4.58`` while sentence-transformers 6.x needs transformers 5; this module uses ``torch.onnx`` and
``onnxruntime.quantization`` directly instead, so no pins fight each other.

Usage (needs the model package; about 1 s to export and 1 s to quantize the first time, then found in the
cache)::

    fp32 = export_onnx(model_dir(), default_cache_dir())
    int8 = quantize_int8(fp32)
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
import uuid
import warnings
from pathlib import Path

log = logging.getLogger("evalstream.encoder")

EXPORT_VERSION = "1"  # bump when the export recipe changes
INPUT_NAMES = ["input_ids", "attention_mask", "token_type_ids"]


def default_cache_dir() -> Path:
    """``$EVALSTREAM_MODEL_CACHE_DIR`` or ``$XDG_CACHE_HOME/evalstream/models`` (``~/.cache/evalstream/models``)."""
    if env := os.environ.get("EVALSTREAM_MODEL_CACHE_DIR"):
        return Path(env)
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "evalstream" / "models"


def _key(model_dir: Path) -> str:
    # versions from package metadata: importing torch just to read its version costs seconds and memory
    from importlib.metadata import version

    h = hashlib.sha256()
    with open(model_dir / "model.safetensors", "rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
    h.update(f"{version('torch')}|{version('onnxruntime')}|{EXPORT_VERSION}".encode())
    return h.hexdigest()[:16]


def _target(model_dir: Path, cache_dir: Path) -> Path:
    folder = Path(cache_dir) / f"all-MiniLM-L6-v2-{_key(model_dir)}"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def export_onnx(model_dir: Path, cache_dir: Path) -> Path:
    """The fp32 ONNX graph of the transformer (inputs ids/mask/types, output ``last_hidden_state``)."""
    folder = _target(model_dir, cache_dir)
    path = folder / "model.onnx"
    if path.is_file():
        return path
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from transformers import AutoModel

    started = time.perf_counter()
    model = AutoModel.from_pretrained(str(model_dir), local_files_only=True).eval()

    class _Hidden(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor):  # type: ignore[no-untyped-def]
            out = self.inner(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
            return out.last_hidden_state

    dummy = tuple(torch.ones(2, 8, dtype=torch.long) for _ in INPUT_NAMES)
    tmp = folder / f".model-{uuid.uuid4().hex}.onnx"
    axes = {name: {0: "batch", 1: "sequence"} for name in [*INPUT_NAMES, "last_hidden_state"]}
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            # The TorchScript exporter writes one self-contained file that every onnxruntime build loads.
            torch.onnx.export(
                _Hidden(model), dummy, str(tmp), input_names=INPUT_NAMES, output_names=["last_hidden_state"],
                dynamic_axes=axes, opset_version=17, dynamo=False,
            )  # fmt: skip
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    log.info("exported %s to %s in %.1fs", model_dir.name, path, time.perf_counter() - started)
    return path


def quantize_int8(fp32_path: Path) -> Path:
    """Dynamic int8 quantization of the weight MatMuls (per-channel, signed), beside the fp32 file."""
    path = fp32_path.with_name("model-int8.onnx")
    if path.is_file():
        return path
    from onnxruntime.quantization import QuantType, quantize_dynamic

    started = time.perf_counter()
    tmp = path.with_name(f".model-int8-{uuid.uuid4().hex}.onnx")
    root = logging.getLogger()
    level = root.level
    root.setLevel(max(level, logging.ERROR))  # the quantizer logs each tensor on the root logger
    try:
        quantize_dynamic(
            str(fp32_path), str(tmp), weight_type=QuantType.QInt8, per_channel=True, reduce_range=False,
            op_types_to_quantize=["MatMul"], extra_options={"MatMulConstBOnly": True},
        )  # fmt: skip
        os.replace(tmp, path)
    finally:
        root.setLevel(level)
        tmp.unlink(missing_ok=True)
    log.info("quantized %s to int8 in %.1fs", fp32_path.name, time.perf_counter() - started)
    return path
