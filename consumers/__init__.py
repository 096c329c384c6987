"""Downstream models that consume what the pipeline produces."""
