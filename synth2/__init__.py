"""synth2: synthetic image-text training data for vision-language models."""

__version__ = "0.1.0"
