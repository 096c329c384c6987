"""The contracts every layer shares: the sample/shard/manifest format, storage, the consumer registry.

Imports nothing else of synth2, so the world builder, the pipeline, the consumers and the service all
build on it (README: "Where things live")."""
