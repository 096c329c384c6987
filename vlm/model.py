"""The VLM: an image embedding → a mapping network → prefix tokens → any HF causal LM decoder (ClipCap-style).

The image side is whatever the shards carry: a pooled embedding `[D]` or a token grid `[T, D]`, real
(an encoder's image tower) or synthetic (the prior's sample). The decoder is any `AutoModelForCausalLM`,
loaded through `from_pretrained` from a local path or a hub id, frozen or trained, optionally with LoRA.

A checkpoint directory holds `vlm_config.json` (this config, including the encoder the embeddings
came from), `mapper.safetensors`, and `decoder/` (the decoder's own `save_pretrained` + tokenizer) unless
the decoder was frozen without LoRA, in which case the config names the decoder it was loaded from.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import torch
import torch.nn as nn
from safetensors.torch import load_file, save_file

log = logging.getLogger(__name__)

CONFIG_NAME = "vlm_config.json"
MAPPER_NAME = "mapper.safetensors"
FORMAT_VERSION = 1


@dataclass
class VLMConfig:
    decoder: str  # local path or hub id of the causal LM
    embed_dim: int  # D of the image embeddings
    encoder: str | None = None  # the encoder the image embeddings came from (open_clip name / local-dir:...)
    prefix_length: int = 4  # prefix tokens the image becomes
    mapper: Literal["mlp", "transformer"] = "mlp"
    mapper_hidden: int = 512  # MLP hidden width
    mapper_layers: int = 2  # transformer mapper depth
    mapper_heads: int = 4
    freeze_decoder: bool = False
    lora_r: int = 0  # > 0: LoRA adapters of this rank on the decoder (needs `peft`)
    lora_alpha: int = 16
    max_caption_tokens: int = 32
    extra: dict = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps({"format_version": FORMAT_VERSION, **asdict(self)}, indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> VLMConfig:
        d = json.loads(text)
        d.pop("format_version", None)
        return cls(**d)


class MLPMapper(nn.Module):
    """ClipCap's MLP: embedding → hidden → prefix_length × hidden size of the decoder."""

    def __init__(self, dim: int, hidden: int, prefix: int, width: int) -> None:
        super().__init__()
        self.prefix, self.width = prefix, width
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.Tanh(), nn.Linear(hidden, prefix * width))

    def forward(self, emb: torch.Tensor) -> torch.Tensor:
        if emb.dim() == 3:  # token grid: pool it for the MLP
            emb = emb.mean(1)
        return self.net(emb).view(emb.shape[0], self.prefix, self.width)


class TransformerMapper(nn.Module):
    """ClipCap's transformer mapper: the embedding (or each grid token) projected to the decoder's width,
    followed by learned constant queries; a small transformer encoder; the queries' outputs are the prefix."""

    def __init__(self, dim: int, prefix: int, width: int, layers: int, heads: int) -> None:
        super().__init__()
        self.prefix, self.width = prefix, width
        self.proj = nn.Linear(dim, prefix * width)
        self.grid_proj = nn.Linear(dim, width)
        self.queries = nn.Parameter(torch.randn(prefix, width) * 0.02)
        layer = nn.TransformerEncoderLayer(width, heads, dim_feedforward=4 * width, dropout=0.0, batch_first=True,
                                           norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)

    def forward(self, emb: torch.Tensor) -> torch.Tensor:
        b = emb.shape[0]
        src = self.grid_proj(emb) if emb.dim() == 3 else self.proj(emb).view(b, self.prefix, self.width)
        x = torch.cat([src, self.queries.expand(b, -1, -1)], dim=1)
        return self.encoder(x)[:, -self.prefix:]


class SynthVLM(nn.Module):
    """Prefix-captioning VLM. `forward(emb, input_ids, attention_mask)` → loss over caption tokens;
    `generate(emb)` → captions (greedy or beam search through the decoder's own `generate`)."""

    def __init__(self, config: VLMConfig, decoder: nn.Module, tokenizer) -> None:
        super().__init__()
        self.config, self.decoder, self.tokenizer = config, decoder, tokenizer
        width = decoder.get_input_embeddings().embedding_dim
        if config.mapper == "mlp":
            self.mapper: nn.Module = MLPMapper(config.embed_dim, config.mapper_hidden, config.prefix_length, width)
        elif config.mapper == "transformer":
            self.mapper = TransformerMapper(config.embed_dim, config.prefix_length, width, config.mapper_layers,
                                            config.mapper_heads)
        else:
            raise ValueError(f"mapper must be 'mlp' or 'transformer' (got {config.mapper!r})")

    # ------------------------------------------------------------ construction

    @classmethod
    def create(cls, config: VLMConfig, device: str = "cpu") -> SynthVLM:
        """A fresh VLM: mapper initialised, decoder loaded from `config.decoder` (path or hub id)."""
        decoder, tok = _load_decoder(config.decoder)
        decoder = _prepare_decoder(decoder, config)
        return cls(config, decoder, tok).to(device)

    @classmethod
    def from_pretrained(cls, path: str | Path, device: str = "cpu") -> SynthVLM:
        path = Path(path)
        cfg_file = path / CONFIG_NAME
        if not cfg_file.exists():
            raise FileNotFoundError(f"{path} is not a synth2 VLM checkpoint (no {CONFIG_NAME})")
        config = VLMConfig.from_json(cfg_file.read_text())
        saved = path / "decoder"
        decoder, tok = _load_decoder(str(saved) if saved.exists() else config.decoder)
        if saved.exists() and (saved / "adapter_config.json").exists():
            from peft import PeftModel

            base, _ = _load_decoder(config.decoder)
            decoder = PeftModel.from_pretrained(base, str(saved))
        elif config.freeze_decoder:
            decoder.requires_grad_(False)
        model = cls(config, decoder, tok)
        model.mapper.load_state_dict(load_file(str(path / MAPPER_NAME)))
        return model.to(device).eval()

    def save_pretrained(self, path: str | Path) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        (path / CONFIG_NAME).write_text(self.config.to_json())
        save_file({k: v.detach().contiguous().cpu() for k, v in self.mapper.state_dict().items()}, str(path / MAPPER_NAME))
        if not self.config.freeze_decoder or self.config.lora_r > 0:
            self.decoder.save_pretrained(str(path / "decoder"))
            self.tokenizer.save_pretrained(str(path / "decoder"))

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    # ------------------------------------------------------------ compute

    @property
    def device(self) -> torch.device:
        return next(self.mapper.parameters()).device

    def prefix(self, emb: torch.Tensor) -> torch.Tensor:
        return self.mapper(emb.to(self.device, torch.float32))

    def tokenize(self, captions: list[str]) -> dict[str, torch.Tensor]:
        """Captions → ids ending in EOS (the decoder learns to stop), padded, with the attention mask."""
        eos = self.tokenizer.eos_token or ""
        enc = self.tokenizer([c + eos for c in captions], padding=True, truncation=True,
                             max_length=self.config.max_caption_tokens, return_tensors="pt")
        return {"input_ids": enc["input_ids"].to(self.device), "attention_mask": enc["attention_mask"].to(self.device)}

    def forward(self, emb: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy over caption tokens, given the image prefix."""
        pre = self.prefix(emb)
        tok = self.decoder.get_input_embeddings()(input_ids)
        embeds = torch.cat([pre.to(tok.dtype), tok], dim=1)
        b, p = pre.shape[:2]
        mask = torch.cat([torch.ones(b, p, dtype=attention_mask.dtype, device=attention_mask.device), attention_mask], 1)
        # HF causal LMs shift labels themselves: labels stay aligned with the inputs (NOTES.md).
        labels = torch.cat([torch.full((b, p), -100, dtype=input_ids.dtype, device=input_ids.device),
                            input_ids.masked_fill(attention_mask == 0, -100)], 1)
        return self.decoder(inputs_embeds=embeds, attention_mask=mask, labels=labels).loss

    @torch.inference_mode()
    def generate(self, emb: torch.Tensor, num_beams: int = 1, max_new_tokens: int | None = None) -> list[str]:
        """Captions for a batch of image embeddings: greedy (`num_beams=1`) or beam search."""
        pre = self.prefix(emb)
        mask = torch.ones(pre.shape[:2], dtype=torch.long, device=pre.device)
        tok = self.tokenizer
        out = self.decoder.generate(
            inputs_embeds=pre, attention_mask=mask, max_new_tokens=max_new_tokens or self.config.max_caption_tokens,
            num_beams=num_beams, do_sample=False, eos_token_id=tok.eos_token_id,
            pad_token_id=tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id)
        return [t.strip() for t in tok.batch_decode(out, skip_special_tokens=True)]


def _load_decoder(ref: str):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(ref)
        decoder = AutoModelForCausalLM.from_pretrained(ref)
    except (OSError, ValueError) as e:
        raise ValueError(f"cannot load decoder {ref!r} with AutoModelForCausalLM: {e}") from e
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "right"
    return decoder, tok


def _prepare_decoder(decoder: nn.Module, config: VLMConfig) -> nn.Module:
    if config.lora_r > 0:
        try:
            from peft import LoraConfig, get_peft_model
        except ImportError as e:
            raise ValueError("lora_r > 0 needs the `peft` package: pip install 'synth2[lora]'") from e
        return get_peft_model(decoder, LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, target_modules="all-linear",
                                                  task_type="CAUSAL_LM"))
    if config.freeze_decoder:
        decoder.requires_grad_(False)
    return decoder
