"""Pipeline stages in Ray Data's batch-inference shape: `__init__` loads the model once per
actor, `__call__(batch: dict[str, np.ndarray]) -> dict` maps one batch. Callable on a plain
dict without Ray, which is how the tests and the single-process baseline use them.
"""

from __future__ import annotations

import io
import logging

import numpy as np
import torch

log = logging.getLogger(__name__)


def _threads(n: int | None) -> None:
    if n:
        torch.set_num_threads(max(1, int(n)))


class CaptionStage:
    """Prompts in, one cleaned caption (or a drop reason) out per row."""

    def __init__(self, captions: dict, threads: int | None = None) -> None:
        from generators.captioners import make_captioner
        from pipeline.spec import Captions

        _threads(threads)
        self.spec = Captions.model_validate(captions)
        self.backend = make_captioner(self.spec)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from generators.captioners import clean_caption

        prompts = [str(p) for p in batch["prompt"]]
        seeds = [int(s) for s in batch["seed"]]
        completions = self.backend.complete(prompts, seeds)
        caps, reasons = [], []
        for c in completions:
            text, why = clean_caption(c, self.spec.min_words, self.spec.max_words)
            caps.append(text or "")
            reasons.append(why or "")
        return {**batch, "caption": np.array(caps, dtype=object), "drop": np.array(reasons, dtype=object)}


class ScoreStage:
    """Caption text embeddings from the encoder's text tower (float16, unit norm)."""

    def __init__(self, encoder: dict, threads: int | None = None) -> None:
        from generators.encoders import Encoder

        _threads(threads)
        self.encoder = Encoder(encoder["name"], encoder.get("pretrained"))

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        texts = [str(t) for t in batch["caption"]]
        emb = self.encoder.encode_text(texts).pooled.numpy().astype(np.float16)
        return {**batch, "text_emb": emb}


class SynthesizeStage:
    """Captions in, prior-synthesized image embeddings out (one seed per caption index)."""

    def __init__(self, synthesis: dict, threads: int | None = None) -> None:
        from generators.encoders import Encoder
        from generators.prior import EmbeddingPrior
        from pipeline.spec import Synthesis

        _threads(threads)
        self.spec = Synthesis.model_validate(synthesis)
        self.encoder = Encoder(self.spec.encoder.name, self.spec.encoder.pretrained)
        self.prior = EmbeddingPrior.from_pretrained(self.spec.prior)
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
        align = (emb * text.pooled).sum(-1)
        return {**batch, "emb": emb.numpy().astype(np.float16), "alignment": align.numpy().astype(np.float32)}


class EmbedStage:
    """Real image-text pairs in (encoded image bytes), encoder image and text embeddings out."""

    def __init__(self, encoder: dict, threads: int | None = None) -> None:
        from generators.encoders import Encoder

        _threads(threads)
        self.encoder = Encoder(encoder["name"], encoder.get("pretrained"))

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from PIL import Image

        images = [Image.open(io.BytesIO(bytes(b))).convert("RGB") for b in batch["image"]]
        emb = self.encoder.encode_images(images).numpy().astype(np.float16)
        text = self.encoder.encode_text([str(t) for t in batch["caption"]]).pooled
        align = (torch.from_numpy(emb.astype(np.float32)) * text).sum(-1)
        return {**batch, "emb": emb, "alignment": align.numpy().astype(np.float32)}
