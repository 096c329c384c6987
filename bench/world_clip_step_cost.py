"""CPU seconds per step of the world's CLIP (batch 128, five shape negatives, 1 thread): fp32 or bf16 autocast,
with or without channels_last, at a few vision widths and image sizes. Random inputs; the step's cost only.

    .venv/bin/python bench/world_clip_step_cost.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _step(model, opt, img: torch.Tensor, txt: torch.Tensor, bf16: bool) -> None:
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        imf = F.normalize(model.encode_image(img).float(), dim=-1)
        txf = F.normalize(model.encode_text(txt).float(), dim=-1)
    loss = -(imf @ txf[:len(img)].T).log_softmax(1).diag().mean()
    opt.zero_grad()
    loss.backward()
    opt.step()


def main() -> None:
    import open_clip

    from generators.world.clip import ClipConfig, model_cfg

    torch.set_num_threads(1)
    batch, negatives = 128, 5
    for width, size in [(12, 64), (16, 64), (12, 96)]:
        mcfg = model_cfg(ClipConfig(vision_width=width, image_size=size), 600, 1, 0)
        for mode in ["fp32", "bf16", "bf16_cl", "fp32_cl"]:
            torch.manual_seed(0)
            model = open_clip.CLIP(**mcfg)
            img = torch.randn(batch, 3, size, size)
            if mode.endswith("cl"):
                model.visual.to(memory_format=torch.channels_last)
                img = img.contiguous(memory_format=torch.channels_last)
            opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
            txt = torch.randint(2, 600, (batch * (1 + negatives), 16))
            txt[:, 10] = 1
            for _ in range(2):
                _step(model, opt, img, txt, mode.startswith("bf16"))
            c0 = time.process_time()
            for _ in range(5):
                _step(model, opt, img, txt, mode.startswith("bf16"))
            print(f"vision width {width} image {size} {mode}: {(time.process_time() - c0) / 5:.3f} CPU s/step", flush=True)


if __name__ == "__main__":
    main()
