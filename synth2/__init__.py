"""synth2: synthetic image-text training data for vision-language models."""

from pipeline.version import __version__

__all__ = ["__version__"]
