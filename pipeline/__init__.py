"""Build synthetic image-text data: the job spec, Ray stages, shards and manifests."""
