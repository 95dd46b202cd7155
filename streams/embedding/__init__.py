"""The embedding model all-MiniLM-L6-v2 and how the worker reaches it.

- :mod:`streams.embedding.encoder` -- :func:`~streams.embedding.encoder.load_encoder`, which picks a backend;
- :mod:`streams.embedding.model`, :mod:`streams.embedding.backends`, :mod:`streams.embedding.onnx_export` --
  the packaged weights (offline), the torch and onnxruntime backends, the one-time ONNX export;
- :mod:`streams.embedding.cache` -- an LRU cache of embeddings in front of any encoder;
- :mod:`streams.embedding.protocol`, :mod:`streams.embedding.process`, :mod:`streams.embedding.server` -- the
  model in a child process of the worker, or in one ``evalstream encoder`` shared over a Unix socket.

Nothing here knows about Kafka, Faust or the worker.
"""
