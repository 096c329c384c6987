"""Model references as workers must see them: a relative path that exists here becomes absolute
(Ray workers may run in another directory or on another node); hub ids and URLs pass through."""

from __future__ import annotations

from pathlib import Path

from pipeline.spec import JobSpec


def local_path(ref: str) -> str:
    prefix = "local-dir:" if ref.startswith("local-dir:") else ""
    path = Path(ref[len(prefix):])
    return prefix + str(path.resolve()) if not path.is_absolute() and path.exists() else ref


def _encoder(section) -> object:
    return section.model_copy(update={"encoder": section.encoder.model_copy(
        update={"name": local_path(section.encoder.name)})})


def resolve_model_paths(spec: JobSpec) -> JobSpec:
    """The spec with every local model path absolute (the spec's hash does not change: workers
    get this copy, the job directory keeps the spec as written)."""
    update: dict = {}
    if spec.captions is not None and spec.captions.backend == "hf":
        update["captions"] = spec.captions.model_copy(update={"model": local_path(spec.captions.model)})
    if spec.synthesis is not None:
        syn = _encoder(spec.synthesis)
        syn = syn.model_copy(update={"prior": local_path(syn.prior)} |
                             ({"decoder": local_path(syn.decoder)} if syn.decoder else {}))
        update["synthesis"] = syn
    if spec.input is not None:
        update["input"] = _encoder(spec.input)
    if getattr(spec.scoring, "encoder", None) is not None:  # pkg: and hub ids pass through
        enc = spec.scoring.encoder
        update["scoring"] = spec.scoring.model_copy(update={"encoder": enc.model_copy(
            update={"name": local_path(enc.name)})})
    return spec.model_copy(update=update)
