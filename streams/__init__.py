"""Everything that talks to Kafka, in rooms that say whether they are on the production path.

- :mod:`streams.sdk` -- what an application imports: the event contract and a publisher (light: no Faust,
  no model);
- :mod:`streams.worker` -- the Faust worker that scores events and writes them to the sinks;
- :mod:`streams.embedding` -- the embedding model and how it is served (in the worker, in a child process, or
  shared by a machine's workers over a Unix socket);
- :mod:`streams.faust_ext` -- every use of Faust's private API, with the version it was verified against;
- :mod:`streams.local` -- development tooling, never on the production path: the local broker, the demo,
  sample traffic;
- :mod:`streams.settings`, :mod:`streams.topics`, :mod:`streams.cli` -- the worker's settings, topic creation,
  and the ``evalstream`` command.
"""
