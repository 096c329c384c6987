"""The embedded world: a procedural image-caption domain and the small models trained on it."""
