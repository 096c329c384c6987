"""The synth2 version: one place, below every package that reports it (the `synth2` command re-exports it)."""

__version__ = "0.1.0"
