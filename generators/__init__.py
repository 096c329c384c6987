"""Everything that produces data: caption backends, encoders, the prior, the embedded world."""
