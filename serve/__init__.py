"""The synth2 HTTP service."""
