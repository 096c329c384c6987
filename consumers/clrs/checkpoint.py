"""A trained CLRS model on disk: `config.json` (spec, model config, algorithm, training figures) and
`model.pt` (PyTorch state dict) in one directory. Training writes it, evaluation reads it."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from consumers.clrs.model import EPD, ModelConfig


def save_model(model: EPD, directory: str | Path, algorithm: str, extra: dict | None = None) -> Path:
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), d / "model.pt")
    (d / "config.json").write_text(json.dumps({"algorithm": algorithm, **model.config_dict(), **(extra or {})}, indent=1))
    return d


def load_model(directory: str | Path) -> tuple[EPD, dict]:
    d = Path(directory)
    if not (d / "config.json").exists():
        raise FileNotFoundError(f"{d} has no config.json: not a CLRS model directory")
    meta = json.loads((d / "config.json").read_text())
    spec = {k: tuple(v) for k, v in meta["spec"].items()}
    model = EPD(spec, ModelConfig(**meta["model"]), meta.get("categories") or {})
    model.load_state_dict(torch.load(d / "model.pt", map_location="cpu", weights_only=True))
    model.eval()
    return model, meta
