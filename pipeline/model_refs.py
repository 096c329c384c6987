"""The model references of a spec: where each one is, whether it is there, and what it is.

A reference is a local path (a folder or a file; `local-dir:PATH` for open_clip), `pkg:PACKAGE/PATH` (a file an
installed wheel ships), a hub id (`gpt2`, `org/repo`, `hf-hub:org/repo`, an open_clip architecture name) or a URL.

- `check_models(spec)`: one `field: message (got VALUE)` line per reference that cannot work here — a path that
  does not exist, a package that is not installed, a hub id that is not in the hub cache while the hub is offline
  (`HF_HUB_OFFLINE=1`). `synth2 spec validate` and every job start call it, so a job fails before Ray starts.
- `resolve_relative(spec, base)`: relative paths are resolved against the spec file's directory first, then the
  current one (a spec is read where it lies; `world/lm` in `configs/demo.yaml` still means the repo's `world/`).
- `describe_models(spec)`: what the manifest records of each model — the reference as written and the sha256 of
  its files (local folders, files and `pkg:` files), or its hub revision when the hub cache has it.
- `key_spec(spec)`: the spec with every local model replaced by the sha256 of its files, which sample keys
  derive from (`pipeline.job.sample_key_id`): moving a model, or the checkout, keeps the keys; another model
  changes them.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

from pipeline.spec import JobSpec

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".gguf", ".zip", ".onnx", ".msgpack", ".h5")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
_URL = re.compile(r"^[a-z][a-z0-9+.-]*://")


@dataclass(frozen=True)
class ModelRef:
    field: str  # where the spec names it: captions.model
    ref: str  # as written
    role: str  # causal-lm, prior, decoder, open_clip, sentence-transformers


def model_refs(spec: JobSpec) -> list[ModelRef]:
    """Every model a spec loads (an `openai` caption backend's model is the server's business)."""
    refs = []
    if spec.captions is not None and spec.captions.backend == "hf":
        refs.append(ModelRef("captions.model", spec.captions.model, "causal-lm"))
    if spec.scoring.encoder is not None:
        enc = spec.scoring.encoder
        refs.append(ModelRef("scoring.encoder.name", enc.name,
                             "open_clip" if enc.kind == "open_clip" else "sentence-transformers"))
    if spec.synthesis is not None:
        refs.append(ModelRef("synthesis.prior", spec.synthesis.prior, "prior"))
        refs.append(ModelRef("synthesis.encoder.name", spec.synthesis.encoder.name, "open_clip"))
        if spec.synthesis.space == "pixel" and spec.synthesis.decoder:
            refs.append(ModelRef("synthesis.decoder", spec.synthesis.decoder, "decoder"))
    if spec.input is not None:
        refs.append(ModelRef("input.encoder.name", spec.input.encoder.name, "open_clip"))
    return refs


def _kind(ref: ModelRef) -> tuple[str, str]:
    """(kind, the part that names it): local, pkg, url, hub or open_clip (an architecture name)."""
    s = ref.ref
    if s.startswith("pkg:"):
        return "pkg", s
    if _URL.match(s):
        return "url", s
    if ref.role == "open_clip":
        if s.startswith("local-dir:"):
            return "local", s[len("local-dir:"):]
        if s.startswith("hf-hub:"):
            return "hub", s[len("hf-hub:"):]
        return "open_clip", s
    if s.startswith("hf-hub:"):
        return "hub", s[len("hf-hub:"):]
    return "local", s


def _offline() -> bool:
    return any(os.environ.get(v, "").lower() in ("1", "true", "yes", "on") for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def _hub_cache() -> Path:
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def hub_revision(repo_id: str) -> str | None:
    """The commit of `repo_id`'s `main` in the local hub cache, or None when it is not cached."""
    folder = _hub_cache() / ("models--" + repo_id.replace("/", "--"))
    main = folder / "refs" / "main"
    if main.is_file():
        return main.read_text().strip() or None
    snaps = sorted((folder / "snapshots").glob("*")) if (folder / "snapshots").is_dir() else []
    return snaps[-1].name if snaps else None


def hub_weight_files(repo_id: str, revision: str | None) -> dict[str, str]:
    """{weight file: sha256} of a cached hub snapshot, read from the cache's blob names (LFS blobs are named by
    their sha256), without reading the files."""
    snap = _hub_cache() / ("models--" + repo_id.replace("/", "--")) / "snapshots" / (revision or "")
    if not revision or not snap.is_dir():
        return {}
    out = {}
    for f in sorted(snap.rglob("*")):
        if f.suffix in WEIGHT_SUFFIXES and f.is_symlink() and re.fullmatch(r"[0-9a-f]{64}", Path(os.readlink(f)).name):
            out[f.relative_to(snap).as_posix()] = Path(os.readlink(f)).name
    return out


def _quote(s: str) -> str:
    return repr(s[:100])


def _missing_local(ref: ModelRef, path: str, base: Path | None) -> str | None:
    """Why a local-looking reference cannot be used, or None when it can (a hub id where the hub is reachable)."""
    p = Path(path)
    if p.exists():
        return _layout_problem(ref, p)
    dirs = [str(d) for d in dict.fromkeys([base.resolve() if base else None, Path.cwd()]) if d is not None]
    msg = "no such file or folder" + ("" if p.is_absolute() else f" (looked in {' and '.join(dirs)})")
    head = "" if p.is_absolute() else path.split("/")[0]
    local_only = p.is_absolute() or path.startswith((".", "~")) or not _HUB_ID.match(path) or Path(head).is_dir()
    if not local_only:  # it reads as a hub id too: fine where the hub is reachable, or cached
        if not _offline() or hub_revision(path):
            return None
        msg += ", and not in the hub cache while the hub is offline (HF_HUB_OFFLINE=1)"
    if head and "/" in path and Path(head).is_dir():
        msg += f"; {head}/ is there, but not this model"
    elif head == "world":
        msg += "; `synth2 world build --out world` builds the embedded world's models"
    return msg


_NAMES = {"prior": "a diffusers prior", "decoder": "a decoder or diffusers pipeline", "open_clip": "an open_clip model"}


def _layout_problem(ref: ModelRef, p: Path) -> str | None:
    """A folder that cannot hold the model its field needs (cheap checks of the standard layouts)."""
    if not p.is_dir():
        if ref.role in ("prior", "decoder"):
            return f"a file; {_NAMES[ref.role]} is a folder"
        return None
    need = {"prior": [("prior",)], "decoder": [("decoder",), ("model_index.json",)],
            "open_clip": [("open_clip_config.json",)]}.get(ref.role)
    if need and not any((p / Path(*n)).exists() for n in need):
        return f"the folder has no {' or '.join('/'.join(n) for n in need)} (not {_NAMES[ref.role]} folder)"
    return None


def check_models(spec: JobSpec, base: str | Path | None = None) -> list[str]:
    """One `field: message (got VALUE)` line per model reference that cannot be loaded here (`base`: the spec
    file's directory, which `resolve_relative` searched first, named in the message)."""
    from generators.pretrained import package_path

    problems = []
    for ref in model_refs(spec):
        kind, name = _kind(ref)
        msg = None
        if kind == "pkg":
            try:
                package_path(name)
            except FileNotFoundError as e:
                msg = str(e)
        elif kind == "local":
            msg = _missing_local(ref, os.path.expanduser(name), Path(base) if base else None)
        elif kind == "hub" and _offline() and not hub_revision(name):
            msg = "not in the hub cache while the hub is offline (HF_HUB_OFFLINE=1)"
        if msg is None and ref.field == "captions.model" and spec.captions.gguf_file and kind == "local":
            gguf = Path(name) / spec.captions.gguf_file
            if Path(name).is_dir() and not gguf.is_file():
                msg = f"captions.gguf_file {spec.captions.gguf_file!r} is not in {name!r}"
        if msg:
            problems.append(f"{ref.field}: {msg} (got {_quote(ref.ref)})")
    return problems


def resolve_relative(spec: JobSpec, base: str | Path) -> JobSpec:
    """The spec with each relative local path that exists under `base` (the spec file's directory) but means
    something else from here rewritten to reach it: relative to the current directory when it lies below it
    (hashes stay the same on every checkout), else absolute. Anything else is left as written."""
    base, here = Path(base).resolve(), Path.cwd().resolve()
    if base == here:
        return spec
    data = spec.model_dump(mode="json", exclude_unset=False)
    changed = False
    for ref in model_refs(spec):
        kind, name = _kind(ref)
        if kind != "local" or Path(name).is_absolute() or name.startswith("~") or not (base / name).exists():
            continue
        target = (base / name).resolve()
        new = os.path.relpath(target, here) if target.is_relative_to(here) else str(target)
        if new == name:
            continue
        prefix = ref.ref[:len(ref.ref) - len(name)]  # local-dir:
        node = data
        *parents, leaf = ref.field.split(".")
        for part in parents:
            node = node[part]
        node[leaf] = prefix + new
        changed = True
    return spec.model_validate(data) if changed else spec


_DIGESTS: dict[tuple, dict] = {}


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def local_digest(path: str | Path) -> dict:
    """{"sha256": digest of every file (relative name and content), "files": {weight file: sha256}} of a folder
    or a file; remembered per (path, size, mtime) for this process."""
    p = Path(path).resolve()
    files = sorted(f for f in p.rglob("*") if f.is_file() and not any(part.startswith(".") for part in
                                                                       f.relative_to(p).parts)) if p.is_dir() else [p]
    key = (str(p), tuple((str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in files))
    if key not in _DIGESTS:
        h, weights = hashlib.sha256(), {}
        for f in files:
            rel = f.relative_to(p).as_posix() if p.is_dir() else f.name
            d = _file_sha256(f)
            h.update(f"{rel}\0{d}\n".encode())
            if f.suffix in WEIGHT_SUFFIXES:
                weights[rel] = d
        _DIGESTS[key] = {"sha256": h.hexdigest(), "files": weights}
    return _DIGESTS[key]


def describe_models(spec: JobSpec) -> list[dict]:
    """The manifest's `models`: each reference as written, its kind, and the sha256 of its files (local and
    `pkg:`) or its hub revision (None when the hub cache does not have it)."""
    from generators.pretrained import package_path

    out = []
    if spec.captions is not None and spec.captions.backend == "openai":
        out.append({"field": "captions.model", "ref": spec.captions.model, "kind": "endpoint",
                    "endpoint": spec.captions.endpoint})
    for ref in model_refs(spec):
        kind, name = _kind(ref)
        d: dict = {"field": ref.field, "ref": ref.ref, "kind": kind}
        if kind in ("local", "pkg"):
            path = package_path(name) if kind == "pkg" else os.path.expanduser(name)
            if Path(path).exists():
                d |= local_digest(path)
            elif _HUB_ID.match(name):  # a hub id after all
                d |= {"kind": "hub", "revision": (rev := hub_revision(name))}
                d |= {"files": files} if (files := hub_weight_files(name, rev)) else {}
        elif kind == "hub":
            d["revision"] = rev = hub_revision(name)
            d |= {"files": files} if (files := hub_weight_files(name, rev)) else {}
        if ref.field == "captions.model" and spec.captions.gguf_file:
            d["gguf_file"] = spec.captions.gguf_file
        enc = _encoder_of(spec, ref.field)
        if enc is not None and enc.pretrained:
            d["pretrained"] = enc.pretrained
            if Path(enc.pretrained).is_file():
                d["pretrained_sha256"] = local_digest(enc.pretrained)["sha256"]
        out.append(d)
    return out


def _encoder_of(spec: JobSpec, field: str):
    section = {"synthesis.encoder.name": spec.synthesis, "input.encoder.name": spec.input,
               "scoring.encoder.name": spec.scoring}.get(field)
    return section.encoder if section is not None else None


def key_spec(spec: JobSpec) -> JobSpec:
    """The spec with each local or `pkg:` model replaced by the sha256 of its files (what sample keys hash)."""
    data = spec.model_dump(mode="json")
    for d in describe_models(spec):
        if "sha256" in d:
            node = data
            *parents, leaf = d["field"].split(".")
            for part in parents:
                node = node[part]
            node[leaf] = "sha256:" + d["sha256"]
    return JobSpec.model_validate(data)
