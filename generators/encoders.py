"""Image-text encoders through open_clip: a built-in name with a `pretrained` tag,
`hf-hub:org/repo`, or `local-dir:/path` (the embedded world's CLIP) — all one code path."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

log = logging.getLogger(__name__)


@dataclass
class TextEncoding:
    pooled: torch.Tensor  # [B, D], unit norm: the caption's text embedding
    tokens: torch.Tensor  # [B, T, D]: per-token states through the text projection
    mask: torch.Tensor  # [B, T] bool: real tokens up to and including the end of text


def load_open_clip(name: str, pretrained: str | None = None, device: str = "cpu"):
    """(model, preprocess, tokenizer) for an open_clip model; a clear error when it cannot load."""
    import open_clip

    try:
        model, _, preprocess = open_clip.create_model_and_transforms(name, pretrained=pretrained, device=device)
        tokenizer = open_clip.get_tokenizer(name)
    except (RuntimeError, FileNotFoundError, ValueError, OSError) as e:
        raise ValueError(f"cannot load open_clip encoder {name!r} (pretrained={pretrained!r}): {e}") from e
    model.eval()
    return model, preprocess, tokenizer


def _project(model, x: torch.Tensor) -> torch.Tensor:
    proj = model.text_projection
    if proj is None:
        return x
    return proj(x) if isinstance(proj, torch.nn.Module) else x @ proj


class Encoder:
    """An open_clip model with the two things synth2 needs: text token states (for the prior)
    and image embeddings (for real data)."""

    def __init__(self, name: str, pretrained: str | None = None, device: str = "cpu") -> None:
        self.name, self.pretrained, self.device = name, pretrained, device
        self.model, self.preprocess, self.tokenizer = load_open_clip(name, pretrained, device)
        self.dim = int(self.model.text_projection.shape[-1] if isinstance(self.model.text_projection, torch.Tensor)
                       else self.model.text_projection.out_features)
        self.context_length = int(self.model.context_length)

    def tokenize(self, texts: list[str]) -> torch.Tensor:
        return self.tokenizer(list(texts)).to(self.device)

    @torch.inference_mode()
    def encode_text(self, texts: list[str]) -> TextEncoding:
        ids = self.tokenize(texts)
        return encode_text_tokens(self.model, ids)

    @torch.inference_mode()
    def encode_images(self, images: list[Image.Image] | np.ndarray) -> torch.Tensor:
        if isinstance(images, np.ndarray):
            images = [Image.fromarray(a) for a in images]
        batch = torch.stack([self.preprocess(im.convert("RGB")) for im in images]).to(self.device)
        return F.normalize(self.model.encode_image(batch).float(), dim=-1)


def encode_text_tokens(model, ids: torch.Tensor) -> TextEncoding:
    """open_clip's `encode_text`, keeping the per-token states as well as the pooled one."""
    from open_clip.transformer import text_global_pool

    cast = model.transformer.get_cast_dtype()
    x = model.token_embedding(ids).to(cast) + model.positional_embedding.to(cast)
    x = model.ln_final(model.transformer(x, attn_mask=model.attn_mask))
    pool_type = model.text_pool_type
    eos_id = getattr(model, "text_eos_id", None)
    pooled = text_global_pool(x, ids, pool_type, eos_token_id=eos_id)
    if pool_type == "eos":
        end = (ids == eos_id).int().argmax(dim=-1)
    else:  # argmax: open_clip's BPE puts the highest id at the end of text
        end = ids.argmax(dim=-1)
    mask = torch.arange(ids.shape[1], device=ids.device)[None, :] <= end[:, None]
    return TextEncoding(F.normalize(_project(model, pooled).float(), dim=-1), _project(model, x).float(), mask)


class SentenceEncoder:
    """A sentence-transformers model as a caption text encoder for dedup and the diversity metrics
    (`scoring.encoder`): a folder, a hub id, or `pkg:all_minilm_l6_v2/model.zip` (all-MiniLM-L6-v2 from its wheel)."""

    def __init__(self, name: str, device: str = "cpu") -> None:
        from generators.pretrained import sentence_model_path

        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as e:
            raise ValueError(f"text encoder {name!r} needs sentence-transformers: pip install 'synth2[real]'") from e
        self.name = name
        try:
            self.model = SentenceTransformer(sentence_model_path(name), device=device)
        except (OSError, ValueError) as e:
            raise ValueError(f"cannot load sentence-transformers text encoder {name!r}: {e}") from e
        get_dim = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        self.dim = int(get_dim())

    @torch.inference_mode()
    def encode(self, texts: list[str]) -> torch.Tensor:
        """[B, D] float32, unit norm."""
        emb = self.model.encode(list(texts), convert_to_tensor=True, normalize_embeddings=True, show_progress_bar=False)
        return emb.float().cpu()


class ClipTextEncoder:
    """The pooled text embedding of an open_clip model, behind the same `encode` as `SentenceEncoder`."""

    def __init__(self, name: str, pretrained: str | None = None, device: str = "cpu") -> None:
        self.encoder = Encoder(name, pretrained, device)
        self.name, self.dim = name, self.encoder.dim

    def encode(self, texts: list[str]) -> torch.Tensor:
        return self.encoder.encode_text(list(texts)).pooled


def load_text_encoder(spec: dict | None, fallback: dict) -> SentenceEncoder | ClipTextEncoder:
    """The caption text encoder a spec asks for: `scoring.encoder` (`kind`, `name`, `pretrained`) when set,
    else FALLBACK, the synthesis encoder (`name`, `pretrained`)."""
    if not spec:
        return ClipTextEncoder(fallback["name"], fallback.get("pretrained"))
    if spec.get("kind", "sentence-transformers") == "sentence-transformers":
        return SentenceEncoder(spec["name"])
    return ClipTextEncoder(spec["name"], spec.get("pretrained"))
