"""The worker: a Faust app that validates, joins, scores and sinks LLM events, batch by batch.

Its modules, in the order an event meets them:

- :mod:`streams.worker.app` -- build the Faust app from settings, wire the agent, run it;
- :mod:`streams.worker.batch` -- one batch as named phases (parse, join, rule scores, refreshes, dead letters,
  edits, novelty, embeddings, state, Kafka, persist);
- :mod:`streams.worker.join`, :mod:`streams.worker.scoring`, :mod:`streams.worker.refreshes`,
  :mod:`streams.worker.novelty_stage`, :mod:`streams.worker.embedding_scores` (with
  :mod:`streams.worker.evalconfig`) -- the phases' state and scores;
- :mod:`streams.worker.dead_letters`, :mod:`streams.worker.rows`, :mod:`streams.worker.persist` -- what leaves
  the worker: dead letters to Kafka, rows to Parquet, written durably before offsets commit;
- :mod:`streams.worker.counters` -- what it has done, logged every 30 s.

Importing this package imports nothing; ``streams.worker.app`` loads Faust and the embedding stage.
"""
