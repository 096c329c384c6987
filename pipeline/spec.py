"""The job spec: the one description of a job, shared by the CLI, `pipeline/run.py` and the API.

Versioned, bounded, and strict: an unknown key is an error, not something silently ignored.
No Ray here, so every package may import it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError

SPEC_VERSION = 1
# The most caption requests (concepts x per_concept) or CLRS trajectories one spec may ask for: no spec can make a
# process grow without limit. The service sets a tighter bound of its own (SYNTH2_MAX_REQUESTS_PER_JOB).
MAX_REQUESTS = int(os.environ.get("SYNTH2_SPEC_MAX_REQUESTS", 10_000_000))


class Strict(BaseModel):
    # strict: `true` and "20" are not integers, "1.5" is not a number (JSON and YAML give real numbers)
    model_config = ConfigDict(extra="forbid", validate_assignment=True, strict=True)


PositiveInt = Annotated[int, Field(ge=1)]


class Concepts(Strict):
    """What to write captions about."""

    items: list[Annotated[str, Field(min_length=1, max_length=200)]] = Field(
        min_length=1, max_length=1_000_000, description="The concept bank: one entry per concept.")
    weights: dict[str, Annotated[float, Field(gt=0, le=1e6)]] | None = Field(
        None, description="Relative share of captions per concept (default: uniform).")
    per_prompt: int = Field(1, ge=1, le=16, description="Concepts named in one prompt.")

    @field_validator("items")
    @classmethod
    def _unique(cls, v: list[str]) -> list[str]:
        seen: set[str] = set()
        dup = [x for x in v if x in seen or seen.add(x)]
        if dup:
            raise ValueError(f"concepts must be unique; repeated: {dup[:5]}")
        return v

    @model_validator(mode="after")
    def _weights_known(self) -> Concepts:
        if self.weights:
            unknown = sorted(set(self.weights) - set(self.items))
            if unknown:
                raise ValueError(f"weights name concepts not in items: {unknown[:5]}")
        return self


class FewShot(Strict):
    concepts: list[Annotated[str, Field(min_length=1, max_length=200)]] = Field(min_length=1, max_length=16)
    caption: str = Field(min_length=1, max_length=1000)


class Sampling(Strict):
    temperature: float = Field(1.0, ge=0.0, le=5.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    top_k: int = Field(0, ge=0, le=100_000)
    max_new_tokens: int = Field(48, ge=1, le=2048)
    seed: int = Field(0, ge=0, le=2**31 - 1)


class Cleaning(Strict):
    """What to do with each shape of LLM output (generators/cleaning.py). Each is counted in stats.json
    (`cleaning`: found; `dropped`: dropped, by reason) whatever is done with it."""

    preamble: Literal["strip", "drop"] = Field("strip", description='A lead-in: "Caption:", "Here is a caption:".')
    quotes: Literal["strip", "drop"] = Field("strip", description="Quotes around the caption.")
    sentences: Literal["first", "keep", "drop"] = Field("first", description="Several sentences or lines.")
    refusal: Literal["drop", "keep"] = Field("drop", description="\"I'm sorry, I can't ...\".")
    off_concept: Literal["keep", "drop"] = Field("keep", description="A caption that does not name every concept "
                                                                       "its prompt asked for.")


class Captions(Strict):
    """Which LLM writes the captions, and how it is prompted."""

    backend: Literal["hf", "openai"] = "hf"
    model: str = Field(min_length=1, max_length=500, description="Local path or hub id (hf); model name (openai).")
    endpoint: str | None = Field(None, max_length=500, description="Base URL of an OpenAI-compatible server.")
    api: Literal["completions", "chat"] = "completions"
    api_key_env: str | None = Field(None, max_length=100, description="Environment variable holding the API key.")
    prompt: str = Field("Concepts: {concepts}\nCaption:", min_length=1, max_length=20_000)
    few_shot: list[FewShot] = Field(default_factory=list, max_length=256)
    shots_per_prompt: int = Field(0, ge=0, le=32, description="Few-shot examples drawn into each prompt.")
    per_concept: int = Field(8, ge=1, le=1_000_000, description="Captions requested per concept.")
    sampling: Sampling = Field(default_factory=Sampling)
    batch_size: int = Field(64, ge=1, le=4096)
    min_words: int = Field(2, ge=1, le=1000)
    max_words: int = Field(64, ge=1, le=10_000)
    concurrency: int = Field(8, ge=1, le=1024, description="Requests in flight (openai).")
    timeout_s: float = Field(60.0, gt=0, le=3600)
    max_retries: int = Field(3, ge=0, le=20)
    gguf_file: str | None = Field(None, min_length=1, max_length=500, pattern=r"^[^/\\]+\.gguf$",
                                  description="hf backend: a GGUF file inside `model` (folder or hub id); a `model` "
                                              "that is a .gguf file (or pkg:PACKAGE/FILE.gguf) needs none.")
    cleaning: Cleaning | None = Field(None, description="Cleaning rules (default: every field's default).")
    dtype: Literal["float32", "float16", "bfloat16"] = Field(
        "float32", description="hf backend: the LLM's weights and activations (float16 needs a GPU stage).")

    @field_validator("prompt")
    @classmethod
    def _has_slot(cls, v: str) -> str:
        if "{concepts}" not in v:
            raise ValueError("prompt must contain the {concepts} placeholder")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> Captions:
        if self.backend == "openai" and not self.endpoint:
            raise ValueError("backend 'openai' needs an endpoint (e.g. http://127.0.0.1:8000/v1)")
        if self.endpoint and not re.match(r"^https?://", self.endpoint):
            raise ValueError(f"endpoint must be an http(s) URL (got {self.endpoint!r})")
        if self.shots_per_prompt > len(self.few_shot):
            raise ValueError(f"shots_per_prompt={self.shots_per_prompt} but only {len(self.few_shot)} few_shot examples")
        if self.min_words > self.max_words:
            raise ValueError(f"min_words ({self.min_words}) is greater than max_words ({self.max_words})")
        return self


class Balance(Strict):
    method: Literal["none", "cap", "target"] = Field(
        "cap", description="none: keep every caption; cap: at most `cap` per concept; target: concept shares as in "
                           "`target`. The drop is logged and recorded in stats.json (balance).")
    cap: int | None = Field(None, ge=1, le=10_000_000,
                            description="Per-concept threshold t (MetaCLIP): keep t/count of a concept's captions "
                                        "(default: the median concept count).")
    target: dict[str, Annotated[float, Field(gt=0)]] | None = Field(
        None, description="Target share per concept; captions naming a concept not listed here are dropped.")

    @model_validator(mode="after")
    def _consistent(self) -> Balance:
        if self.method == "target" and not self.target:
            raise ValueError("method 'target' needs a target distribution")
        return self


class TextEncoderSpec(Strict):
    kind: Literal["sentence-transformers", "open_clip"] = "sentence-transformers"
    name: str = Field(min_length=1, max_length=500, description="sentence-transformers folder, hub id or "
                      "pkg:PACKAGE/PATH (pkg:all_minilm_l6_v2/model.zip); open_clip name, hf-hub: or local-dir:.")
    pretrained: str | None = Field(None, max_length=500, description="open_clip only: pretrained tag or file.")


class Scoring(Strict):
    embedder: Literal["encoder"] = Field("encoder", description="Text embeddings from the synthesis encoder.")
    encoder: TextEncoderSpec | None = Field(None, description="Text encoder for dedup and the diversity metrics "
                                                              "(default: the synthesis encoder's text tower).")
    exact_dedup: bool = Field(True, description="Drop a caption whose normalised text repeats an earlier one's.")
    near_dup_threshold: float = Field(0.98, ge=0.0, le=1.0, description="Cosine at or above which a caption is a "
                                      "near duplicate of an earlier kept one; 1.0 turns near-duplicate removal off.")
    balance: Balance = Field(default_factory=Balance)


class EncoderSpec(Strict):
    name: str = Field(min_length=1, max_length=500,
                      description="open_clip name (ViT-B-32), hf-hub:org/repo or local-dir:/path.")
    pretrained: str | None = Field(None, max_length=500, description="open_clip pretrained tag or file.")


PIXEL_FIELDS = ("decoder", "decoder_steps", "decoder_guidance_scale")


class Synthesis(Strict):
    space: Literal["embedding", "pixel"] = Field(
        "embedding", description="embedding: the prior's image embedding is the sample; pixel: captions become "
                                 "images (decoder), the encoder's image tower embeds them, png + emb.npy are written.")
    prior: str = Field(min_length=1, max_length=500, description="Folder or hub id with prior/ and prior_scheduler/.")
    encoder: EncoderSpec
    scheduler: Literal["ddim", "ddpm", "dpm", "unclip"] = "ddim"
    steps: int = Field(25, ge=1, le=1000)
    guidance_scale: float = Field(1.0, ge=1.0, le=50.0)
    seed: int = Field(0, ge=0, le=2**31 - 1)
    batch_size: int = Field(256, ge=1, le=65_536)
    decoder: str | None = Field(None, min_length=1, max_length=500,
                                description="space pixel: folder or hub id of an unCLIP-style decoder (decoder/ and "
                                            "decoder_scheduler/, fed the prior's embedding) or of any diffusers "
                                            "text-to-image pipeline (model_index.json, fed the caption).")
    decoder_steps: int = Field(25, ge=1, le=1000, description="space pixel: the decoder's sampling steps.")
    decoder_guidance_scale: float = Field(1.0, ge=1.0, le=50.0, description="space pixel: the decoder's guidance.")
    dtype: Literal["float32", "float16", "bfloat16"] = Field(
        "float32", description="The prior transformer's weights (float16 needs a GPU stage); sampling stays float32.")

    @model_validator(mode="after")
    def _pixel_fields(self) -> Synthesis:
        if self.space == "pixel" and not self.decoder:
            raise ValueError("space 'pixel' needs a decoder (a decoder folder or a diffusers text-to-image pipeline)")
        stray = [f for f in PIXEL_FIELDS if self.space == "embedding"
                 and getattr(self, f) != type(self).model_fields[f].default]  # a dumped spec repeats defaults
        if stray:
            raise ValueError(f"{', '.join(stray)} only apply to space 'pixel' (space is 'embedding')")
        return self


class EmbedInput(Strict):
    """Real image-text shards to embed (job kind `embed`)."""

    shards: list[Annotated[str, Field(min_length=1, max_length=2000)]] = Field(min_length=1, max_length=100_000)
    image_key: str = Field("png", pattern=r"^[a-z0-9.]+$")
    text_key: str = Field("txt", pattern=r"^[a-z0-9.]+$")
    encoder: EncoderSpec
    batch_size: int = Field(256, ge=1, le=65_536)


def _clrs_algorithm(name: str) -> str:
    from generators.clrs import algorithms  # NumPy only

    if name not in (known := algorithms()):
        raise ValueError(f"unknown CLRS algorithm {name!r}; known: {', '.join(known)}")
    return name


class ClrsSplit(Strict):
    """One split of a `clrs` job: how many trajectories per algorithm, on how many nodes."""

    count: int = Field(ge=0, le=10_000_000, description="Trajectories per algorithm.")
    nodes: list[Annotated[int, Field(ge=2, le=1024)]] = Field(
        min_length=1, max_length=64, description="Node counts, used in turn (sample i has nodes[i % len]).")


class Clrs(Strict):
    """CLRS-30 execution traces (job kind `clrs`): one WebDataset sample per trajectory."""

    algorithms: list[Annotated[str, Field(min_length=1, max_length=100), AfterValidator(_clrs_algorithm)]] = Field(
        min_length=1, max_length=64, description="CLRS-30 algorithm names (generators/clrs).")
    train: ClrsSplit = Field(default_factory=lambda: ClrsSplit(count=1000, nodes=[16]))
    val: ClrsSplit = Field(default_factory=lambda: ClrsSplit(count=32, nodes=[16]))
    test: ClrsSplit = Field(default_factory=lambda: ClrsSplit(count=32, nodes=[64]))
    seed: int = Field(0, ge=0, le=2**31 - 1)
    variant: Literal["benchmark", "textbook"] = Field(
        "benchmark", description="benchmark: the CLRS-30 benchmark's traces exactly (dm-clrs); textbook: the book's "
        "reading where the two differ (generators/clrs).")
    inputs: Literal["benchmark", "training"] = Field(
        "benchmark", description="benchmark: the benchmark's fixed input distributions; training: the reference "
        "training script's randomised ones (e.g. per-graph edge probability).")

    @field_validator("algorithms")
    @classmethod
    def _unique(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError("algorithms must be unique")
        return v


class ConsumerRun(Strict):
    """A consumer (contracts/registry.py) to run (job kind `consumer`); it writes its results into output.dir."""

    name: str = Field(min_length=1, max_length=32, description="A registered consumer (`synth2 consumers list`).")
    params: dict[str, Any] = Field(default_factory=dict, description="The consumer's params (its own schema).")

    @field_validator("name")
    @classmethod
    def _registered(cls, v: str) -> str:
        from contracts.registry import UnknownConsumer, get  # pydantic only; each consumer imports torch lazily

        try:
            get(v)
        except UnknownConsumer as e:
            raise ValueError(str(e)) from None
        return v

    @field_validator("params")
    @classmethod
    def _params(cls, v: dict[str, Any], info: Any) -> dict[str, Any]:  # info: pydantic.ValidationInfo
        """Validated by the consumer's model (errors read `consumer.params.<field>`), stored with defaults filled."""
        from contracts.registry import get

        if "name" not in info.data:  # the name was rejected already
            return v
        return get(info.data["name"]).params.model_validate(v).model_dump(mode="json")


class Output(Strict):
    dir: str = Field(min_length=1, max_length=2000, description="Local directory or fsspec URL.")
    shard_size: int = Field(1000, ge=1, le=1_000_000)
    name: str = Field("synth2", pattern=r"^[A-Za-z0-9_-]{1,64}$", description="Shard file prefix.")


class StageResources(Strict):
    num_cpus: float = Field(1.0, ge=0.0, le=1024)
    num_gpus: float = Field(0.0, ge=0.0, le=64)
    concurrency: int = Field(1, ge=1, le=4096)


class Resources(Strict):
    caption: StageResources = Field(default_factory=StageResources)
    score: StageResources = Field(default_factory=StageResources)
    synthesize: StageResources = Field(default_factory=StageResources)
    embed: StageResources = Field(default_factory=StageResources)


class JobSpec(Strict):
    """A synth2 job. `kind: synthesize` turns concepts into (caption, image embedding) shards;
    `kind: embed` turns real image-text shards into the same contract."""

    version: Literal[1] = Field(description="Spec format version; this release reads 1.")
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$", description="Job name.")
    kind: Literal["synthesize", "embed", "clrs", "consumer"] = "synthesize"
    concepts: Concepts | None = None
    captions: Captions | None = None
    scoring: Scoring = Field(default_factory=Scoring)
    synthesis: Synthesis | None = None
    input: EmbedInput | None = None
    clrs: Clrs | None = None
    consumer: ConsumerRun | None = None
    output: Output
    resources: Resources = Field(default_factory=Resources)

    @field_validator("version", mode="before")
    @classmethod
    def _not_bool(cls, v: Any) -> Any:
        if isinstance(v, bool):  # True == 1 to Python, not to a spec
            raise ValueError("must be the integer 1")
        return v

    @model_validator(mode="after")
    def _sections_for_kind(self) -> JobSpec:
        need = {"synthesize": ("concepts", "captions", "synthesis"), "embed": ("input",), "clrs": ("clrs",),
                "consumer": ("consumer",)}[self.kind]
        missing = [s for s in need if getattr(self, s) is None]
        if missing:
            raise ValueError(f"kind '{self.kind}' needs section(s): {', '.join(missing)}")
        if (n := requests(self)) > MAX_REQUESTS:
            field, what = (("captions.per_concept", "len(concepts.items) x captions.per_concept")
                           if self.kind == "synthesize" else ("clrs", "(train + val + test counts) x algorithms"))
            raise PydanticCustomError("too_many_requests", "{what} = {n} requests, over the limit of {limit} per spec "
                                      "(SYNTH2_SPEC_MAX_REQUESTS); split the job",
                                      {"field": field, "what": what, "n": n, "limit": MAX_REQUESTS})
        return self


def requests(spec: JobSpec) -> int:
    """What a spec asks the pipeline to make: caption requests (synthesize), trajectories (clrs), else 0."""
    if spec.kind == "synthesize" and spec.concepts and spec.captions:
        return len(spec.concepts.items) * spec.captions.per_concept
    if spec.kind == "clrs" and spec.clrs:
        return len(spec.clrs.algorithms) * sum(s.count for s in (spec.clrs.train, spec.clrs.val, spec.clrs.test))
    return 0


class SpecError(ValueError):
    """A spec that failed validation; `problems` holds one `path: message (got VALUE)` line each."""

    def __init__(self, problems: list[str], source: str = "spec") -> None:
        self.problems = problems
        super().__init__(f"{source} is invalid:\n" + "\n".join(f"  {p}" for p in problems))


def _short(value: Any) -> str:
    """At most 80 characters of a value, without serialising more than a few of its items (an input may be huge)."""
    text = json.dumps(_head(value), default=str) if not isinstance(value, str) else repr(value[:100])
    return text if len(text) <= 80 else text[:77] + "..."


def _head(value: Any, depth: int = 0) -> Any:
    if isinstance(value, dict):
        return {str(k): _head(v, depth + 1) for k, v in list(value.items())[:8]} if depth < 3 else "{...}"
    if isinstance(value, (list, tuple)):
        return [_head(v, depth + 1) for v in value[:8]] if depth < 3 else "[...]"
    return value[:100] if isinstance(value, str) else value


def format_errors(err: ValidationError) -> list[str]:
    lines = []
    for e in err.errors():
        ctx = e.get("ctx") or {}
        if "field" in ctx:  # a rule over several fields, named by the validator (the request bound)
            lines.append(f"{ctx['field']}: {e['msg']} (got {ctx['n']})")
            continue
        path = ".".join(str(p) for p in e["loc"]) or "(top level)"
        msg = e["msg"].removeprefix("Value error, ")
        lines.append(f"{path}: {msg} (got {_short(e.get('input'))})")
    return lines


def parse_spec(data: Any, source: str = "spec") -> JobSpec:
    if not isinstance(data, dict):
        raise SpecError([f"(top level): expected a mapping of sections (got {_short(data)})"], source)
    try:
        return JobSpec.model_validate(data)
    except ValidationError as e:
        raise SpecError(format_errors(e), source) from None


def load_spec(path: str | Path) -> JobSpec:
    """Read a YAML or JSON spec file; raises `SpecError` listing every problem."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise SpecError([f"(file): cannot read {path}: {e.strerror}"], str(path)) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise SpecError([f"(file): not valid YAML/JSON: {e}"], str(path)) from None
    return parse_spec(data, str(path))


def spec_hash(spec: JobSpec) -> str:
    """Hash of everything that decides a job's samples. Resources do not, and neither does where
    the output goes: the same job written elsewhere has the same sample keys."""
    exclude: dict = {"resources": True, "output": {"dir"}}
    if spec.synthesis is not None and spec.synthesis.space == "embedding":  # unused there: hashes stay as before
        exclude["synthesis"] = set(PIXEL_FIELDS)
    for section in ("captions", "synthesis"):  # dtype came later: at its default it leaves hashes as they were
        if getattr(spec, section) is not None and getattr(spec, section).dtype == "float32":
            exclude.setdefault(section, set()).add("dtype")
    for section, fields in (("captions", ("gguf_file", "cleaning")), ("scoring", ("encoder",))):  # added later:
        if getattr(spec, section) is not None:                                                  # absent, hashes stay
            unset = {f for f in fields if getattr(getattr(spec, section), f) is None}
            if unset and exclude.get(section) is not True:
                exclude[section] = set(exclude.get(section, set())) | unset
    if spec.clrs is not None:  # variant and inputs came later: at their defaults they leave hashes as they were
        unset = {f for f in ("variant", "inputs") if getattr(spec.clrs, f) == "benchmark"}
        if unset:
            exclude["clrs"] = unset
    for section in ("clrs", "consumer"):  # sections added after version 1 shipped: absent, they leave hashes as they were
        if getattr(spec, section) is None:
            exclude[section] = True
    data = spec.model_dump(mode="json", exclude=exclude)
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def json_schema() -> dict:
    return JobSpec.model_json_schema()
