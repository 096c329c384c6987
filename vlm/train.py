"""`synth2 vlm train`: finetune the VLM on mixed shard sets, in one process or with Ray Train.

Output directory layout:
  model/                 the final VLM (`SynthVLM.from_pretrained(out / "model")`)
  checkpoints/step-N/    model/ + state.pt (optimizer, scheduler, RNG states, step = data position)
  metrics.jsonl          one line per logged step: loss, lr, samples/s, data-wait share, skipped samples
  loss.png               the loss curve
  train.json             the config and the final figures

Resume is exact: the data stream is a deterministic function of the seed (vlm/data.py), so a run resumed
at step N re-reads the stream up to N batches and continues on the same samples, with the optimizer,
scheduler and every RNG restored; the weights equal those of an uninterrupted run.
"""

from __future__ import annotations

import json
import logging
import random
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from vlm.data import Source, iter_source, loader
from vlm.model import SynthVLM, VLMConfig

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    sources: list[str]  # "PATH_OR_URL[@WEIGHT]"
    decoder: str  # causal LM path or hub id
    out: str
    steps: int = 500
    batch_size: int = 64
    lr: float = 1e-3
    decoder_lr: float | None = None  # default: lr / 10 (the decoder starts pretrained)
    warmup: int = 50
    weight_decay: float = 0.01
    seed: int = 0
    prefix_length: int = 4
    mapper: str = "mlp"
    mapper_hidden: int = 512
    freeze_decoder: bool = False
    lora_r: int = 0
    noise_std: float = 0.0  # Gaussian noise on the image embeddings while training (CapDec)
    noise_on: str = "synthetic"  # "synthetic" | "all"
    shuffle_buffer: int = 1000
    num_workers: int = 0
    log_every: int = 10
    ckpt_every: int = 100
    keep_checkpoints: int = 2
    threads: int | None = None
    progress: bool = True
    stop_at: int | None = None  # end this run after this step (as a preemption would); run again to resume
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        checks = {"steps": self.steps >= 1, "batch_size": self.batch_size >= 1, "lr": self.lr > 0,
                  "prefix_length": 1 <= self.prefix_length <= 256, "noise_std": self.noise_std >= 0,
                  "noise_on": self.noise_on in ("synthetic", "all"), "mapper": self.mapper in ("mlp", "transformer"),
                  "ckpt_every": self.ckpt_every >= 1, "log_every": self.log_every >= 1, "sources": bool(self.sources)}
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise ValueError("; ".join(f"{k}: invalid value {getattr(self, k)!r}" for k in bad))
        for s in self.sources:
            Source.parse(s)


_NOT_IDENTITY = {"out", "progress", "stop_at", "threads", "num_workers", "log_every", "ckpt_every", "keep_checkpoints"}


def fingerprint(cfg: TrainConfig) -> dict:
    """What makes two runs the same run: a checkpoint resumes only a run with the same fingerprint."""
    return {k: v for k, v in asdict(cfg).items() if k not in _NOT_IDENTITY}


def prepare_out(cfg: TrainConfig, force: bool = False) -> Path:
    """Create the output directory; refuse one holding another run's checkpoints unless `force` (then clear it)."""
    out = Path(cfg.out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"out: {out} exists and is not a directory")
    record = out / "run.json"
    if force and out.exists():
        for name in ("checkpoints", "model", "metrics.jsonl", "train.json", "loss.png", "run.json"):
            p = out / name
            shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)
    if record.exists():
        old = json.loads(record.read_text())
        new = json.loads(json.dumps(fingerprint(cfg)))
        diff = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
        if diff:
            raise ValueError(f"out: {out} holds a run with other settings ({', '.join(f'{k}={old.get(k)!r}' for k in diff)}); "
                             "use another --out, or --force to start over there")
    out.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps(fingerprint(cfg), indent=1))
    return out


def probe_sources(sources: list[Source]) -> tuple[int, str | None]:
    """(embedding dim, encoder name) from the first sample of the first source; all sources must agree on dim."""
    dims, encoder = set(), None
    for s in sources:
        first = next(iter_source(s.url))
        dims.add(first["emb"].shape[-1])
        meta = first["meta"]
        enc = meta.get("encoder") or meta.get("generator", {}).get("encoder")
        encoder = encoder or (enc.get("name") if isinstance(enc, dict) else enc)
    if len(dims) != 1:
        raise ValueError(f"sources disagree on the embedding dimension: {sorted(dims)}")
    return dims.pop(), encoder


def build_model(cfg: TrainConfig, dim: int, encoder: str | None) -> SynthVLM:
    vcfg = VLMConfig(decoder=cfg.decoder, embed_dim=dim, encoder=encoder, prefix_length=cfg.prefix_length,
                     mapper=cfg.mapper, mapper_hidden=cfg.mapper_hidden, freeze_decoder=cfg.freeze_decoder,
                     lora_r=cfg.lora_r)
    return SynthVLM.create(vcfg)


def make_optimizer(model: SynthVLM, cfg: TrainConfig):
    from transformers import get_cosine_schedule_with_warmup

    dec_lr = cfg.decoder_lr if cfg.decoder_lr is not None else cfg.lr / 10
    groups = [{"params": [p for p in model.mapper.parameters() if p.requires_grad], "lr": cfg.lr}]
    dec = [p for p in model.decoder.parameters() if p.requires_grad]
    if dec:
        groups.append({"params": dec, "lr": dec_lr})
    opt = torch.optim.AdamW(groups, weight_decay=cfg.weight_decay)
    sched = get_cosine_schedule_with_warmup(opt, min(cfg.warmup, cfg.steps // 2), cfg.steps)
    return opt, sched


def _rng_state() -> dict:
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}


def _set_rng_state(s: dict) -> None:
    torch.set_rng_state(s["torch"])
    np.random.set_state(s["numpy"])
    random.setstate(s["python"])


def latest_checkpoint(out: Path) -> Path | None:
    ckpts = sorted((out / "checkpoints").glob("step-*"), key=lambda p: int(p.name.split("-")[1]))
    ckpts = [c for c in ckpts if (c / "state.pt").exists()]
    return ckpts[-1] if ckpts else None


def save_checkpoint(out: Path, step: int, model: SynthVLM, opt, sched, keep: int, extra: dict | None = None) -> Path:
    final = out / "checkpoints" / f"step-{step}"
    tmp = final.with_name(final.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp / "model")
    torch.save({"step": step, "optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "rng": _rng_state(),
                **(extra or {})},
               tmp / "state.pt")
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)  # a checkpoint directory without .tmp is whole
    for old in sorted((out / "checkpoints").glob("step-*"), key=lambda p: int(p.name.split("-")[1].split(".")[0]))[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def _noise(emb: torch.Tensor, synthetic: torch.Tensor, cfg: TrainConfig) -> torch.Tensor:
    if cfg.noise_std <= 0:
        return emb
    noise = torch.randn_like(emb) * cfg.noise_std
    if cfg.noise_on == "synthetic":
        noise = noise * synthetic.view(-1, *([1] * (emb.dim() - 1))).to(emb.dtype)
    return emb + noise


def run_training(cfg: TrainConfig, rank: int = 0, world_size: int = 1,
                 wrap: Callable[[torch.nn.Module], torch.nn.Module] | None = None,
                 report: Callable[[dict], None] | None = None) -> dict:
    """The training loop, shared by the single process and every Ray Train worker (`wrap` = DDP there).
    The caller has checked the output directory (`prepare_out`)."""
    out = Path(cfg.out)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    sources = [Source.parse(s) for s in cfg.sources]
    dim, encoder = probe_sources(sources)
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    random.seed(cfg.seed)
    ckpt = latest_checkpoint(out)
    if ckpt is not None:
        model = SynthVLM.from_pretrained(ckpt / "model")
        model.train()
        if cfg.freeze_decoder and cfg.lora_r == 0:
            model.decoder.requires_grad_(False)
    else:
        model = build_model(cfg, dim, encoder)
    opt, sched = make_optimizer(model, cfg)
    state = torch.load(ckpt / "state.pt", weights_only=False) if ckpt is not None else None
    start = state["step"] if state else 0
    # The data iterator first (creating it draws from torch's RNG), then the RNG states of the checkpoint.
    per_rank = max(1, cfg.batch_size // world_size)
    data = iter(loader(sources, per_rank, cfg.seed, cfg.shuffle_buffer, cfg.num_workers, rank, world_size))
    for _ in range(start):  # the exact data position: the stream is deterministic
        next(data)
    if state is not None:
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        _set_rng_state(state["rng"])
        log.info("resuming from %s (step %d)", ckpt, start)
    net = wrap(model) if wrap else model
    net.train()
    metrics_path = out / "metrics.jsonl"
    if rank == 0:
        kept = [ln for ln in (metrics_path.read_text().splitlines() if metrics_path.exists() else [])
                if json.loads(ln)["step"] <= start]
        metrics_path.write_text("".join(ln + "\n" for ln in kept))
    bar = _bar(cfg, start, rank)
    wait = compute = 0.0
    window_loss, window_n, t_window, samples = 0.0, 0, time.perf_counter(), 0
    skipped: dict[str, int] = {}
    last = {}
    if state is not None:  # the partly filled logging window, so that the logged losses match too
        window_loss, window_n = state.get("window", [0.0, 0])
        skipped = state.get("skipped", {})
    for step in range(start + 1, cfg.steps + 1):
        t0 = time.perf_counter()
        batch = next(data)
        t1 = time.perf_counter()
        toks = model.tokenize(batch["txt"])
        emb = _noise(batch["emb"], batch["synthetic"], cfg)
        loss = net(emb, toks["input_ids"], toks["attention_mask"])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.trainable_parameters(), 1.0)
        opt.step()
        sched.step()
        t2 = time.perf_counter()
        wait, compute = wait + (t1 - t0), compute + (t2 - t1)
        window_loss, window_n, samples = window_loss + loss.item(), window_n + 1, samples + len(batch["txt"])
        skipped.update(batch["skipped"])
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}")
        if step % cfg.log_every == 0 or step == cfg.steps:
            now = time.perf_counter()
            last = {"step": step, "loss": window_loss / window_n, "lr": sched.get_last_lr()[0],
                    "samples_per_s": samples * world_size / (now - t_window),
                    "data_wait_share": wait / max(wait + compute, 1e-9), "skipped": sum(skipped.values()),
                    "time": time.time()}
            if rank == 0:
                with open(metrics_path, "a") as f:
                    f.write(json.dumps(last) + "\n")
            if report:
                report(last)
            window_loss, window_n, t_window, samples = 0.0, 0, now, 0
        if rank == 0 and (step % cfg.ckpt_every == 0 or step == cfg.steps or step == cfg.stop_at):
            save_checkpoint(out, step, model, opt, sched, cfg.keep_checkpoints,
                            {"window": [window_loss, window_n], "skipped": skipped})
        if step == cfg.stop_at:
            if bar is not None:
                bar.close()
            return {"steps": step, "stopped_at": step, "final_loss": last.get("loss")}
    if bar is not None:
        bar.close()
    result = {"steps": cfg.steps, "final_loss": last.get("loss"), "data_wait_share": wait / max(wait + compute, 1e-9),
              "skipped_samples": sum(skipped.values()), "world_size": world_size, "encoder": encoder, "embed_dim": dim}
    if rank == 0:
        model.save_pretrained(out / "model")
        (out / "train.json").write_text(json.dumps({"config": asdict(cfg), "result": result}, indent=1))
        plot_loss(metrics_path, out / "loss.png")
    return result


class _LineProgress:
    """The progress bar's stand-in when stderr is not a terminal (`make demo > log`, a job's log file): one plain
    line at most every EVERY seconds and one at the end, instead of a carriage-return redraw every second that a
    log keeps as hundreds of bars on one line. It has the three methods of tqdm the training loop calls."""

    def __init__(self, total: int, initial: int, every: float = 30.0, file=None) -> None:
        self.total, self.n, self.every, self.file = total, initial, every, file or sys.stderr
        self.loss, self.t0 = None, time.monotonic()
        self.shown = self.t0

    def update(self, k: int = 1) -> None:
        self.n += k
        if time.monotonic() - self.shown >= self.every:
            self._line()

    def set_postfix(self, loss: str) -> None:
        self.loss = loss

    def close(self) -> None:
        self._line()

    def _line(self) -> None:
        self.shown = time.monotonic()
        loss = f", loss {self.loss}" if self.loss is not None else ""
        print(f"vlm train: step {self.n}/{self.total}{loss} ({self.shown - self.t0:.0f} s)", file=self.file, flush=True)


def _bar(cfg: TrainConfig, start: int, rank: int):
    if not cfg.progress or rank != 0:
        return None
    if not sys.stderr.isatty():
        return _LineProgress(cfg.steps, start)
    from tqdm.auto import tqdm

    return tqdm(total=cfg.steps, initial=start, desc="vlm train", mininterval=1.0, file=sys.stderr)


def plot_loss(metrics_path: Path, png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(ln) for ln in metrics_path.read_text().splitlines() if ln.strip()]
    if not rows:
        return
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot([r["step"] for r in rows], [r["loss"] for r in rows])
    ax.set_xlabel("step")
    ax.set_ylabel("caption loss (cross-entropy)")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.set_title("VLM training loss")
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)


def train(cfg: TrainConfig, force: bool = False) -> dict:
    """Single process (CPU or the current device)."""
    prepare_out(cfg, force)
    return run_training(cfg)


def _ray_worker(config: dict) -> None:
    import ray.train
    import ray.train.torch

    ctx = ray.train.get_context()
    cfg = TrainConfig(**config)
    run_training(cfg, ctx.get_world_rank(), ctx.get_world_size(), wrap=ray.train.torch.prepare_model,
                 report=lambda m: ray.train.report(m))


def train_ray(cfg: TrainConfig, num_workers: int = 2, use_gpu: bool = False, address: str | None = None,
              force: bool = False) -> dict:
    """Ray Train (`TorchTrainer`, DDP): `num_workers` workers, global batch `batch_size` split across them.
    Rank 0 writes checkpoints and the model to `cfg.out` (shared storage on a multi-node cluster)."""
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from pipeline.run import init_ray

    prepare_out(cfg, force)
    init_ray(address)  # the cluster at `address` or a running `ray start`, else a local Ray on loopback
    cfg = TrainConfig(**{**asdict(cfg), "out": str(Path(cfg.out).resolve()), "progress": False,
                         "sources": [_absolute(s) for s in cfg.sources], "decoder": _absolute(cfg.decoder)})
    trainer = TorchTrainer(_ray_worker, train_loop_config=asdict(cfg),
                           scaling_config=ScalingConfig(num_workers=num_workers, use_gpu=use_gpu,
                                                        resources_per_worker={"CPU": 1}),
                           run_config=RunConfig(storage_path=str(Path(cfg.out).resolve() / "ray"), name="vlm-train"))
    res = trainer.fit()
    if res.error:
        raise res.error
    return json.loads((Path(cfg.out) / "train.json").read_text())["result"]


def _absolute(ref: str) -> str:
    """Local paths made absolute for Ray workers (whose working directory differs); URLs and hub ids kept.
    Sources keep their @WEIGHT."""
    src = Source.parse(ref)
    p = Path(src.url)
    if not p.exists():
        return ref
    return str(p.resolve()) + (f"@{src.weight}" if src.url != ref else "")
