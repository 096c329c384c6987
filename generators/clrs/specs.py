"""The CLRS-30 feature specification: for every algorithm, each feature's stage, location and type.

Mirrors the benchmark's vocabulary (Veličković et al., 2022) so that trajectories written here read
like the reference ones: a feature is `(stage, location, type)`; hints are time series `[T, ...]`.
No Ray and no torch here: samplers are NumPy only.
"""

from __future__ import annotations


class Stage:
    INPUT = "input"
    OUTPUT = "output"
    HINT = "hint"


class Location:
    NODE = "node"
    EDGE = "edge"
    GRAPH = "graph"


class Type:
    SCALAR = "scalar"
    CATEGORICAL = "categorical"
    MASK = "mask"
    MASK_ONE = "mask_one"
    POINTER = "pointer"
    SHOULD_BE_PERMUTATION = "should_be_permutation"  # a pointer output that must be a permutation
    PERMUTATION_POINTER = "permutation_pointer"      # the decoded form of the above


STAGES = (Stage.INPUT, Stage.OUTPUT, Stage.HINT)
LOCATIONS = (Location.NODE, Location.EDGE, Location.GRAPH)
TYPES = (Type.SCALAR, Type.CATEGORICAL, Type.MASK, Type.MASK_ONE, Type.POINTER, Type.SHOULD_BE_PERMUTATION,
         Type.PERMUTATION_POINTER)

# algorithm -> feature name -> (stage, location, type). Each algorithm module adds its own entry with
# `register` (generators/clrs/__init__.py), so the table and the sampler cannot drift apart.
SPECS: dict[str, dict[str, tuple[str, str, str]]] = {}
