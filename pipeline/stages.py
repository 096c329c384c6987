"""Pipeline stages in Ray Data's batch-inference shape: `__init__` loads the model once per
actor, `__call__(batch: dict[str, np.ndarray]) -> dict` maps one batch. Callable on a plain
dict without Ray, which is how the tests and the single-process baseline use them.

Every stage takes `threads` (torch CPU threads) and `device`: "cpu", or "cuda" for a stage the
spec gives GPUs (`torch_device` refuses "cuda" where no GPU is visible, naming the stage). The
caption LLM and the prior also take a `dtype` (`captions.dtype`, `synthesis.dtype`).
"""

from __future__ import annotations

import io
import logging
import os

import numpy as np
import torch

log = logging.getLogger(__name__)


DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def _threads(n: int | None) -> None:
    if n:
        torch.set_num_threads(max(1, int(n)))


def torch_device(num_gpus: float, stage: str, cuda_available: bool | None = None) -> str:
    """The device a stage given `num_gpus` runs on: CUDA when it has GPUs, else the CPU. A stage
    asking for GPUs in a process that sees none is an error naming the stage, never a silent CPU run."""
    if not num_gpus:
        return "cpu"
    if cuda_available is None:
        cuda_available = torch.cuda.is_available()
    if not cuda_available:
        raise RuntimeError(f"resources.{stage}.num_gpus is {num_gpus} but this worker sees no CUDA device "
                           f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')!r}); "
                           f"set resources.{stage}.num_gpus to 0 or run on a GPU node")
    return "cuda"


def torch_dtype(name: str, device: str, field: str) -> torch.dtype:
    """A spec's dtype name as a torch dtype; float16 needs CUDA (CPU float16 matmuls are slow or missing)."""
    if name not in DTYPES:
        raise ValueError(f"{field} must be one of {', '.join(DTYPES)} (got {name!r})")
    if name == "float16" and device == "cpu":
        raise ValueError(f"{field} float16 needs a GPU stage; on CPU use bfloat16 or float32")
    return DTYPES[name]


class CaptionStage:
    """Prompts in, one cleaned caption (or a drop reason) out per row."""

    def __init__(self, captions: dict, threads: int | None = None, device: str = "cpu") -> None:
        from generators.captioners import HFCaptioner, make_captioner
        from pipeline.spec import Captions

        _threads(threads)
        self.spec = Captions.model_validate(captions)
        self.backend = make_captioner(self.spec)
        if isinstance(self.backend, HFCaptioner):  # the stage, not the backend, decides device and dtype
            dtype = torch_dtype(self.spec.dtype, device, "captions.dtype")
            self.backend.model.to(device=device, dtype=dtype)
            self.backend.device = device

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import json

        from generators.cleaning import clean, rules_for

        prompts = [str(p) for p in batch["prompt"]]
        seeds = [int(s) for s in batch["seed"]]
        completions = self.backend.complete(prompts, seeds)
        # the prompted concepts (a JSON list per row), for the off-concept check; rows without them skip it
        named = [json.loads(str(c)) for c in batch["concepts"]] if "concepts" in batch else [[]] * len(prompts)
        rules = rules_for(self.spec)
        caps, reasons, flags = [], [], []
        for c, concepts in zip(completions, named):
            r = clean(c.text, c.finished, rules, concepts, error=c.error)
            caps.append(r.caption or "")
            reasons.append(r.drop or "")
            flags.append(",".join(r.flags))
        return {**batch, "caption": np.array(caps, dtype=object), "drop": np.array(reasons, dtype=object),
                "flags": np.array(flags, dtype=object)}


class ScoreStage:
    """Caption text embeddings (float16, unit norm) for dedup and the diversity metrics: from `text_encoder`
    (`scoring.encoder`, e.g. a sentence-transformers model) when given, else from the synthesis encoder's
    text tower."""

    def __init__(self, encoder: dict, threads: int | None = None, device: str = "cpu",
                 text_encoder: dict | None = None) -> None:
        from generators.encoders import Encoder, load_text_encoder

        _threads(threads)
        self.encoder = Encoder(encoder["name"], encoder.get("pretrained"), device=device) if not text_encoder else None
        self.text_encoder = load_text_encoder(text_encoder, encoder) if text_encoder else None

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        texts = [str(t) for t in batch["caption"]]
        if self.text_encoder is not None:
            emb = self.text_encoder.encode(texts).numpy().astype(np.float16)
        else:
            emb = self.encoder.encode_text(texts).pooled.float().cpu().numpy().astype(np.float16)
        return {**batch, "text_emb": emb}


class SynthesizeStage:
    """Captions in, prior-synthesized image embeddings out (one seed per caption index)."""

    def __init__(self, synthesis: dict, threads: int | None = None, device: str = "cpu") -> None:
        from generators.encoders import Encoder
        from generators.prior import EmbeddingPrior
        from pipeline.spec import Synthesis

        _threads(threads)
        self.spec = Synthesis.model_validate(synthesis)
        self.encoder = Encoder(self.spec.encoder.name, self.spec.encoder.pretrained, device=device)
        self.prior = EmbeddingPrior.from_pretrained(self.spec.prior, device=device,
                                                    dtype=torch_dtype(self.spec.dtype, device, "synthesis.dtype"))
        if self.prior.dim != self.encoder.dim:
            raise ValueError(f"synthesis.prior embeds in {self.prior.dim} dimensions but synthesis.encoder "
                             f"{self.spec.encoder.name!r} in {self.encoder.dim}: they must belong together")
        self.null = self.encoder.encode_text([""])

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from pipeline.prompts import derive_seed

        texts = [str(t) for t in batch["caption"]]
        text = self.encoder.encode_text(texts)
        seeds = [derive_seed("prior", self.spec.seed, int(i)) for i in batch["index"]]
        emb = self.prior.sample(text, seeds, null=self.null, steps=self.spec.steps,
                                guidance_scale=self.spec.guidance_scale, scheduler=self.spec.scheduler)
        emb = emb.float().cpu()
        align = (emb * text.pooled.float().cpu()).sum(-1)
        return {**batch, "emb": emb.numpy().astype(np.float16), "alignment": align.numpy().astype(np.float32)}


class EmbedStage:
    """Real image-text pairs in (encoded image bytes), encoder image and text embeddings out."""

    def __init__(self, encoder: dict, threads: int | None = None, device: str = "cpu") -> None:
        from generators.encoders import Encoder

        _threads(threads)
        self.encoder = Encoder(encoder["name"], encoder.get("pretrained"), device=device)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from PIL import Image

        images = [Image.open(io.BytesIO(bytes(b))).convert("RGB") for b in batch["image"]]
        emb = self.encoder.encode_images(images).float().cpu().numpy().astype(np.float16)
        text = self.encoder.encode_text([str(t) for t in batch["caption"]]).pooled.float().cpu()
        align = (torch.from_numpy(emb.astype(np.float32)) * text).sum(-1)
        return {**batch, "emb": emb, "alignment": align.numpy().astype(np.float32)}


class PixelSynthesizeStage:
    """Captions in, images out (`png`), and their embeddings from the encoder's image tower (`emb`).

    With an unCLIP-style decoder the prior first turns each caption into an image embedding (the
    same one, from the same seed, that the embedding path writes) and the decoder draws it; a
    diffusers text-to-image pipeline draws the caption itself. `seconds` adds up the time spent
    in each step (prior with its text encoding, decoder, encoder with PNG encoding).
    """

    def __init__(self, synthesis: dict, threads: int | None = None, device: str = "cpu") -> None:
        from generators.encoders import Encoder
        from generators.pixel import load_decoder
        from generators.prior import EmbeddingPrior
        from pipeline.spec import Synthesis

        _threads(threads)
        self.spec = Synthesis.model_validate(synthesis)
        if self.spec.space != "pixel" or not self.spec.decoder:
            raise ValueError("PixelSynthesizeStage needs synthesis.space 'pixel' and a decoder")
        self.encoder = Encoder(self.spec.encoder.name, self.spec.encoder.pretrained, device=device)
        self.decoder = load_decoder(self.spec.decoder, device)
        self.prior = None
        if self.decoder.kind == "embedding":
            self.prior = EmbeddingPrior.from_pretrained(self.spec.prior, device=device,
                                                        dtype=torch_dtype(self.spec.dtype, device, "synthesis.dtype"))
            dims = {"synthesis.prior": self.prior.dim, "synthesis.decoder": self.decoder.dim,
                    "synthesis.encoder": self.encoder.dim}
            if len(set(dims.values())) != 1:
                raise ValueError(f"embedding sizes differ ({dims}): prior, decoder and encoder must belong together")
        self.null = self.encoder.encode_text([""])
        self.seconds = {"prior": 0.0, "decoder": 0.0, "encoder": 0.0}

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import time

        from generators.pixel import png_bytes
        from pipeline.prompts import derive_seed

        s = self.spec
        idx = [int(i) for i in batch["index"]]
        texts = [str(t) for t in batch["caption"]]
        t0 = time.perf_counter()
        text = self.encoder.encode_text(texts)
        prior_emb = None
        if self.prior is not None:
            prior_emb = self.prior.sample(text, [derive_seed("prior", s.seed, i) for i in idx], null=self.null,
                                          steps=s.steps, guidance_scale=s.guidance_scale, scheduler=s.scheduler)
        t1 = time.perf_counter()
        seeds = [derive_seed("decoder", s.seed, i) for i in idx]
        if prior_emb is not None:
            images = self.decoder.decode(prior_emb, seeds, steps=s.decoder_steps,
                                         guidance_scale=s.decoder_guidance_scale, scheduler=s.scheduler)
        else:
            images = self.decoder.generate(texts, seeds, steps=s.decoder_steps, guidance_scale=s.decoder_guidance_scale)
        t2 = time.perf_counter()
        pngs = [png_bytes(im) for im in images]
        emb = self.encoder.encode_images(images).float().cpu()
        text = text.__class__(text.pooled.float().cpu(), text.tokens, text.mask)
        if prior_emb is not None:
            prior_emb = prior_emb.float().cpu()
        t3 = time.perf_counter()
        for k, dt in (("prior", t1 - t0), ("decoder", t2 - t1), ("encoder", t3 - t2)):
            self.seconds[k] += dt
        out = {**batch, "emb": emb.numpy().astype(np.float16), "png": np.array(pngs, dtype=object),
               "alignment": (emb * text.pooled).sum(-1).numpy().astype(np.float32)}
        out["prior_cosine"] = ((emb * prior_emb).sum(-1).numpy().astype(np.float32) if prior_emb is not None
                               else np.full(len(idx), np.nan, dtype=np.float32))
        return out
