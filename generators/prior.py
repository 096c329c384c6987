"""The text-to-image-embedding prior: a diffusers `PriorTransformer` plus a scheduler.

Folder layout as in unCLIP/Karlo hub repositories: `prior/` (the transformer) and
`prior_scheduler/` (the training noise schedule). The sampling scheduler is chosen at run time
(`ddim`, `ddpm`, `dpm` or `unclip`) from that schedule's config. The transformer works in a
standardised space (`clip_mean`/`clip_std`) and predicts the clean embedding ("sample").
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from generators.encoders import TextEncoding

SCHEDULERS = ("ddim", "ddpm", "dpm", "unclip")


def make_scheduler(kind: str, config: dict):
    from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler, UnCLIPScheduler

    classes = {"ddim": DDIMScheduler, "ddpm": DDPMScheduler, "dpm": DPMSolverMultistepScheduler,
               "unclip": UnCLIPScheduler}
    if kind not in classes:
        raise ValueError(f"unknown scheduler {kind!r}; expected one of {', '.join(SCHEDULERS)}")
    return classes[kind].from_config(config)


@dataclass
class EmbeddingPrior:
    prior: torch.nn.Module
    scheduler_config: dict
    device: str = "cpu"
    dtype: torch.dtype = torch.float32  # the transformer's; the sampling loop itself stays in float32

    @classmethod
    def from_pretrained(cls, path: str, device: str = "cpu", dtype: torch.dtype = torch.float32) -> EmbeddingPrior:
        """Load from a local folder or a hub id holding `prior/` and `prior_scheduler/`."""
        from diffusers import DDPMScheduler, PriorTransformer

        try:
            prior = PriorTransformer.from_pretrained(path, subfolder="prior", torch_dtype=dtype).to(device).eval()
            sched = DDPMScheduler.from_pretrained(path, subfolder="prior_scheduler")
        except (OSError, ValueError) as e:
            raise ValueError(f"cannot load prior {path!r} (expects prior/ and prior_scheduler/): {e}") from e
        return cls(prior, dict(sched.config), device, dtype)

    @property
    def dim(self) -> int:
        return int(self.prior.config.embedding_dim)

    @torch.inference_mode()
    def sample(self, text: TextEncoding, seeds: list[int], *, null: TextEncoding | None = None,
               steps: int = 25, guidance_scale: float = 1.0, scheduler: str = "ddim") -> torch.Tensor:
        """Image embeddings [B, D] (unit norm) for the captions encoded in `text`.

        Each sample's starting noise comes from its own seed, so a sample's result does not
        depend on which batch it was in. `null` is the encoding of the empty caption, needed
        when `guidance_scale` > 1 (classifier-free guidance).
        """
        if len(seeds) != text.pooled.shape[0]:
            raise ValueError(f"need one seed per caption (got {len(seeds)} seeds for {text.pooled.shape[0]})")
        guided = guidance_scale > 1.0
        if guided and null is None:
            raise ValueError("guidance_scale > 1 needs the null (empty caption) encoding")
        sched = make_scheduler(scheduler, self.scheduler_config)
        sched.set_timesteps(steps, device=self.device)
        b, d = text.pooled.shape[0], self.dim
        x = torch.stack([torch.randn(d, generator=torch.Generator().manual_seed(int(s))) for s in seeds]).to(self.device)
        x = x * sched.init_noise_sigma
        dt = self.dtype
        pooled, tokens, mask = text.pooled.to(self.device, dt), text.tokens.to(self.device, dt), text.mask.to(self.device)
        if guided:
            pooled = torch.cat([null.pooled.expand(b, -1).to(self.device, dt), pooled])
            tokens = torch.cat([null.tokens.expand(b, -1, -1).to(self.device, dt), tokens])
            mask = torch.cat([null.mask.expand(b, -1).to(self.device), mask])
        for t in sched.timesteps:
            inp = torch.cat([x, x]) if guided else x
            pred = self.prior(inp.to(dt), timestep=t, proj_embedding=pooled, encoder_hidden_states=tokens,
                              attention_mask=mask).predicted_image_embedding.float()
            if guided:
                uncond, cond = pred.chunk(2)
                pred = uncond + guidance_scale * (cond - uncond)
            x = sched.step(pred, t, x).prev_sample
        return F.normalize(self.prior.post_process_latents(x.to(dt)).float(), dim=-1)
