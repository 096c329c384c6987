"""The deployment policy: what a key holder's spec may make the service read, call and reveal.

A spec names models and data (local paths, `file://` and other fsspec URLs, hub ids), a caption
endpoint and a secret. On one's own machine (`synth2 run`) it may name anything; submitted to the
service, each must lie inside the roots, hosts and names the deployment allows (serve/settings.py), or
the submission is refused with one `field: rule (got value)` line per problem. Consumer params are
checked through their `ReadsFrom` markers (contracts/reads.py), so a new consumer needs no change here.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from itertools import islice
from urllib.parse import unquote, urlsplit

from pipeline.spec import JobSpec, requests
from serve.settings import ROOT, Settings

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]{0,95}(/[\w.-]{1,96})?$")
# Never handed to a job, whatever the settings say: the service's own credentials.
SERVICE_SECRETS = frozenset({"SYNTH2_API_KEYS", "SYNTH2_API_KEY", "DATABASE_URL", "SYNTH2_DATABASE_URL",
                             "RAY_AUTH_TOKEN"})
# What a job process inherits from the service's environment (plus SYNTH2_JOB_ENV and the one named secret).
ENV_KEEP = frozenset({"PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "TZ", "TMPDIR", "TEMP", "TMP",
                      "VIRTUAL_ENV", "PYTHONPATH", "PYTHONHASHSEED", "PYTHONNOUSERSITE", "LD_LIBRARY_PATH", "TERM",
                      "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "SYNTH2_JOB_CPUS",
                      "SYNTH2_SPEC_MAX_REQUESTS"})
ENV_KEEP_PREFIXES = ("LC_", "HF_", "TRANSFORMERS_", "TOKENIZERS_", "TORCH", "OMP_", "MKL_", "OPENBLAS_", "CUDA_",
                     "NVIDIA_", "XDG_", "RAY_ENABLE_", "RAY_DEDUP_", "PYTORCH_")


def _glob_free(path: str) -> str:
    """The part of a path before its first brace or glob character (what a pattern is rooted at)."""
    cut = min((i for i in (path.find(c) for c in "{*?[") if i >= 0), default=len(path))
    return path[:cut]


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


class Policy:
    def __init__(self, settings: Settings) -> None:
        self.s = settings
        self.roots = {"model": settings.models_allowed, "data": settings.data_allowed}

    # ------------------------------------------------------------ locations

    def location(self, field: str, kind: str, value: str) -> str | None:
        """None when a spec may read VALUE as a `kind` ("model" or "data"); otherwise the problem."""
        env = "SYNTH2_MODEL_ROOTS" if kind == "model" else "SYNTH2_DATA_ROOTS"
        roots = self.roots[kind]
        refuse = f"{field}: {kind} locations must lie inside {env} ({', '.join(roots) or 'none'}) (got {value!r})"
        if "\0" in value or any(p == ".." for p in re.split(r"[/\\]", unquote(value))):
            return f"{field}: `..` is not allowed in a {kind} location (got {value!r})"
        if value.startswith("pkg:"):  # a file shipped inside an installed package: that package must be a root
            return None if any(r.startswith("pkg:") and _inside(value, r) for r in roots) else refuse
        scheme = urlsplit(value).scheme if "://" in value else ""
        if scheme and scheme != "file":
            urls = [r for r in roots if "://" in r and not r.startswith("file://")]
            return None if any(_inside(value, r) for r in urls) else refuse
        path = value.removeprefix("file://")
        local_roots = [os.path.realpath(r.removeprefix("file://")) for r in roots if "://" not in r or
                       r.startswith("file://")]
        full = os.path.join(ROOT, path)  # relative paths resolve where the job runs
        if any(c in path for c in "{*?["):
            try:
                from braceexpand import braceexpand

                paths = list(islice(braceexpand(full), 10_001))
            except Exception:  # noqa: BLE001 -- an unbalanced pattern
                return f"{field}: not a valid shard pattern (got {value!r})"
            if len(paths) > 10_000:
                return f"{field}: a pattern may name at most 10000 files (got {value!r})"
            # each named file itself (a link to outside is refused); for a glob, the directory it lies in
            paths = [os.path.realpath(p) if _glob_free(p) == p else
                     os.path.realpath(os.path.dirname(_glob_free(p)) or "/") for p in paths]
        else:
            paths = [os.path.realpath(full)]
        if all(any(_inside(p, r) for r in local_roots) for p in paths):
            return None
        if kind == "model" and not scheme and self.s.allow_hub_models and HUB_ID.match(path) \
                and not os.path.exists(full):
            return None
        return refuse + (" (hub ids need SYNTH2_ALLOW_HUB_MODELS)" if kind == "model" and HUB_ID.match(path) else "")

    def encoder(self, field: str, name: str, pretrained: str | None) -> Iterator[str]:
        if name.startswith("local-dir:"):
            if (p := self.location(f"{field}.name", "model", name.removeprefix("local-dir:"))) is not None:
                yield p
        elif name.startswith("hf-hub:") and not self.s.allow_hub_models:
            yield f"{field}.name: hub models need SYNTH2_ALLOW_HUB_MODELS (got {name!r})"
        if pretrained is not None:
            if "/" in pretrained or "." in pretrained or os.path.exists(os.path.join(ROOT, pretrained)):
                if (p := self.location(f"{field}.pretrained", "model", pretrained)) is not None:
                    yield p
            elif not self.s.allow_hub_models:  # an open_clip tag downloads its weights
                yield f"{field}.pretrained: pretrained tags download weights; they need SYNTH2_ALLOW_HUB_MODELS " \
                      f"(got {pretrained!r})"

    # ------------------------------------------------------------ a whole spec

    def problems(self, spec: JobSpec) -> list[str]:
        """Every way SPEC leaves what this deployment allows, one line each (empty: allowed)."""
        out: list[str] = []

        def check(field: str, kind: str, value: str | None) -> None:
            if value is not None and (p := self.location(field, kind, value)) is not None:
                out.append(p)

        if (n := requests(spec)) > self.s.max_requests_per_job:
            field = "captions.per_concept" if spec.kind == "synthesize" else spec.kind
            out.append(f"{field}: this job asks for {n} requests, over this service's limit of "
                       f"{self.s.max_requests_per_job} per job (SYNTH2_MAX_REQUESTS_PER_JOB) (got {n})")
        c = spec.captions
        if c is not None and spec.kind == "synthesize":
            if c.backend == "hf":
                check("captions.model", "model", c.model)
                gguf = getattr(c, "gguf_file", None)  # a file inside `model`
                if gguf and (gguf.startswith(("/", "\\")) or ".." in re.split(r"[/\\]", gguf)):
                    out.append(f"captions.gguf_file: must name a file inside captions.model (got {gguf!r})")
            if c.endpoint:
                u = urlsplit(c.endpoint)
                host = (u.hostname or "").lower()
                hostport = f"{host}:{u.port or (443 if u.scheme == 'https' else 80)}"
                if host not in self.s.caption_hosts and hostport not in self.s.caption_hosts:
                    out.append(f"captions.endpoint: caption endpoints must name a host in SYNTH2_CAPTION_HOSTS "
                               f"({', '.join(self.s.caption_hosts) or 'none'}) (got {c.endpoint!r})")
            if c.api_key_env and (c.api_key_env in SERVICE_SECRETS or c.api_key_env not in self.s.secret_names):
                out.append(f"captions.api_key_env: secrets must be named in SYNTH2_SECRET_NAMES "
                           f"({', '.join(self.s.secret_names) or 'none'}) and not be the service's own "
                           f"(got {c.api_key_env!r})")
        if spec.synthesis is not None and spec.kind == "synthesize":
            check("synthesis.prior", "model", spec.synthesis.prior)
            check("synthesis.decoder", "model", spec.synthesis.decoder)
            out += self.encoder("synthesis.encoder", spec.synthesis.encoder.name, spec.synthesis.encoder.pretrained)
        text_encoder = getattr(spec.scoring, "encoder", None)
        if text_encoder is not None and spec.kind == "synthesize":
            if text_encoder.kind == "open_clip":
                out += self.encoder("scoring.encoder", text_encoder.name, text_encoder.pretrained)
            else:
                check("scoring.encoder.name", "model", text_encoder.name)
        if spec.input is not None and spec.kind == "embed":
            for i, s in enumerate(spec.input.shards):
                check(f"input.shards.{i}", "data", s)
            out += self.encoder("input.encoder", spec.input.encoder.name, spec.input.encoder.pretrained)
        if spec.consumer is not None and spec.kind == "consumer":
            from contracts.registry import get, reads

            params = get(spec.consumer.name).params.model_validate(spec.consumer.params)
            for field, kind, value in reads(params):
                check(f"consumer.params.{field}", kind, value)
        return out

    # ------------------------------------------------------------ the job's environment

    def job_env(self, spec: dict, environ: dict[str, str] | None = None) -> dict[str, str]:
        """The environment a job process gets: the harmless basics, SYNTH2_JOB_ENV, and the one secret its
        spec names (allowed at submission) — never the service's keys, database URL or Ray token."""
        environ = dict(os.environ if environ is None else environ)
        keep = {k: v for k, v in environ.items()
                if k in ENV_KEEP or k.startswith(ENV_KEEP_PREFIXES) or k in self.s.job_env}
        secret = ((spec.get("captions") or {}).get("api_key_env")) if spec.get("kind", "synthesize") == "synthesize" \
            else None
        if secret and secret in self.s.secret_names and secret in environ:
            keep[secret] = environ[secret]
        return {k: v for k, v in keep.items() if k not in SERVICE_SECRETS}
