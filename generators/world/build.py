"""`synth2 world build`: render the splits, train the world's models, measure them.

Every step leaves a marker holding the hash of the build settings; a second build with the
same settings skips every finished step (and a finished build entirely).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import platform
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from contracts.shards import sha256_file
from generators.world.clip import ClipConfig
from generators.world.lm import LMConfig
from generators.world.pixel_train import PixelConfig
from generators.world.prior_train import PriorConfig

log = logging.getLogger(__name__)

SPLITS = ("pretrain", "train", "val", "test")
WORLD_VERSION = 1
# Settings added after worlds were built, at the value that reproduces the older builds: left out of the
# settings hash, so a world built before they existed is not rebuilt.
HASH_NEUTRAL = {"clip": {"empty_share": 0.0, "relation_negatives": False}}


@dataclass
class WorldConfig:
    size: str = "quick"
    seed: int = 0
    image_size: int = 64
    split_sizes: dict[str, int] = field(default_factory=lambda: {"pretrain": 4000, "train": 4000, "val": 384,
                                                                 "test": 960})
    clip: ClipConfig = field(default_factory=ClipConfig)
    lm: LMConfig = field(default_factory=LMConfig)
    prior: PriorConfig = field(default_factory=PriorConfig)
    shard_size: int = 1000
    threads: int = 2
    pixel: PixelConfig = field(default_factory=PixelConfig)

    @classmethod
    def from_dict(cls, d: dict) -> WorldConfig:
        """The settings a world.json records (`config`), as a WorldConfig; options it predates keep their defaults."""
        sub = {"clip": ClipConfig, "lm": LMConfig, "prior": PriorConfig, "pixel": PixelConfig}
        return cls(**{k: (sub[k](**{kk: tuple(vv) if isinstance(vv, list) else vv for kk, vv in v.items()})
                          if k in sub else v) for k, v in d.items()})

    def digest(self, without: tuple[str, ...] = ()) -> str:
        """Hash of the settings; `without` leaves sections out (the steps that do not depend on them)."""
        data = {k: v for k, v in asdict(self).items() if k not in without}
        for section, options in HASH_NEUTRAL.items():  # an option at its old behaviour keeps built worlds valid
            if section in data:
                data[section] = {k: v for k, v in data[section].items() if options.get(k, object()) != v}
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def preset(size: str, seed: int = 0, image_size: int = 64) -> WorldConfig:
    """The build settings of a named size: `tiny` (tests, seconds), `quick` (≤5 min), `full` (≤30 min)."""
    if size == "tiny":
        return WorldConfig(size, seed, image_size, {"pretrain": 384, "train": 384, "val": 192, "test": 192},
                           ClipConfig(image_size=image_size, vision_width=8, text_width=64, embed_dim=32,
                                      steps=30, batch_size=64, shape_negatives=True),
                           LMConfig(width=64, docs=600, steps=40, batch_size=32),
                           PriorConfig(heads=2, head_dim=16, layers=1, steps=40, batch_size=64), shard_size=100,
                           pixel=PixelConfig(image_size=16, channels=(8, 16), mid_attention=False, steps=30,
                                             batch_size=16, eval_steps=4, eval_scenes=48))
    if size == "quick":
        return WorldConfig(size, seed, image_size, {"pretrain": 4800, "train": 4000, "val": 384, "test": 960},
                           # Hard shape negatives lift zero-shot shape from 0.59 (260 steps x 160, none) to 0.84
                           # at 400 x 128 and 0.90 at 600 (bench/results/world_clip_sweep.json). The text tower
                           # reads each caption and its five shape swaps, two thirds of a step: at width 64 it
                           # costs a third less (0.90 at 600 steps), so the CPU of 600 steps at width 128 buys
                           # 850-900: shape 0.954 at 850 in the 2-thread build (0.940 at 900: one seed, the schedule
                           # moves it). Fewer swaps per step (0.87) and mirrored renders (0.88) did not pay; bf16
                           # autocast was slower.
                           ClipConfig(image_size=image_size, vision_width=12, text_width=64, steps=850, batch_size=128,
                                      lr=3e-3, shape_negatives=True),
                           LMConfig(docs=8000, steps=500, batch_size=48, lr=3e-3),
                           PriorConfig(layers=2, steps=600, batch_size=128),
                           # The pixel decoder serves only the pixel-path comparison; at 150 steps (and 96 test scenes
                           # to measure it) the whole quick build fits its 5 minutes on 2 idle cores: 280 s (with 400
                           # steps and CLIP 900: 336 s; bench/results/world_quick_seed0.json).
                           pixel=PixelConfig(image_size=32, channels=(16, 32, 64), steps=150, batch_size=48,
                                             eval_scenes=96))
    if size == "full":
        return WorldConfig(size, seed, image_size, {"pretrain": 30000, "train": 12000, "val": 960, "test": 1920},
                           ClipConfig(image_size=image_size, vision_width=16, steps=1400, batch_size=256),
                           LMConfig(layers=3, docs=30000, steps=1500, batch_size=64, lr=3e-3),
                           PriorConfig(layers=4, steps=4000, batch_size=128),
                           pixel=PixelConfig(image_size=32, channels=(32, 64, 64), steps=3000, batch_size=64))
    raise ValueError(f"unknown world size {size!r}; expected tiny, quick or full")


class _Steps:
    """Markers `_work/<step>.done` holding the settings hash: which steps are finished."""

    def __init__(self, root: Path, digest: str) -> None:
        self.dir, self.digest = root / "_work", digest
        self.dir.mkdir(parents=True, exist_ok=True)

    def done(self, name: str) -> bool:
        marker = self.dir / f"{name}.done"
        return marker.exists() and marker.read_text() == self.digest

    def finish(self, name: str) -> None:
        (self.dir / f"{name}.done").write_text(self.digest)

    def trained(self, name: str, train) -> dict:
        """Run a training step unless it is finished; either way return its recorded figures."""
        path = self.dir / f"{name}-stats.json"
        if not self.done(name):
            path.write_text(json.dumps(train()))
            self.finish(name)
        return json.loads(path.read_text())


def _png(arr: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def render_split(split: str, n: int, cfg: WorldConfig) -> tuple[np.ndarray, list]:
    from generators.world.render import render
    from generators.world.splits import scenes

    rng = np.random.default_rng([cfg.seed, 100 + SPLITS.index(split)])
    scs = list(scenes(split, n, cfg.seed))
    images = np.stack([np.asarray(render(s, rng, cfg.image_size)) for s in scs])
    return images, scs


def load_split(work: Path, split: str) -> tuple[np.ndarray, list]:
    """A rendered split as build_world keeps it in WORLD/_work: (images, scenes)."""
    from generators.world.concepts import Scene

    return (np.load(work / f"{split}-images.npy"),
            [Scene.from_dict(d) for d in json.loads((work / f"{split}-scenes.json").read_text())])


def build_world(out: str | Path, size: str = "quick", seed: int = 0, image_size: int = 64,
                force: bool = False, config: WorldConfig | None = None) -> dict:
    """Build (or reuse) the world in `out`; returns the contents of `world.json`. `config` replaces the
    size's preset (say, another world's recorded settings with one option changed: `WorldConfig.from_dict`)."""
    from generators.encoders import Encoder
    from generators.pixel import EmbeddingDecoder
    from generators.prior import EmbeddingPrior
    from generators.world import evaluate
    from generators.world.annotate import captions, random_caption
    from generators.world.clip import clip_training_set, train_clip
    from generators.world.lm import corpus_documents, train_lm
    from generators.world.pixel_train import decoder_quality, train_decoder
    from generators.world.prior_train import train_prior
    from generators.world.splits import held_out_compositions
    from generators.world.tokenizer import EOS, save_clip_tokenizer, save_lm_tokenizer, train_bpe

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"--out {out} exists and is not a directory")
    cfg = config or preset(size, seed, image_size)
    digest = cfg.digest()
    world_json = out / "world.json"
    if world_json.exists() and not force:
        existing = json.loads(world_json.read_text())
        if existing.get("config_hash") == digest:
            log.info("world in %s is already built with these settings; reusing it", out)
            return existing
    if force and (out / "_work").exists():
        shutil.rmtree(out / "_work")
    torch.set_num_threads(cfg.threads)
    # The pixel decoder's settings decide only its own step: changing them keeps every other marker.
    steps = _Steps(out, cfg.digest(without=("pixel",)))
    pixel_steps = _Steps(out, digest)
    timings: dict[str, float] = {}
    cpu_timings: dict[str, float] = {}  # CPU seconds of every thread: the work, whatever else runs
    held = set(held_out_compositions(seed))
    work = out / "_work"

    t, c = time.time(), time.process_time()
    if not steps.done("render"):
        for split in SPLITS:
            images, scs = render_split(split, cfg.split_sizes[split], cfg)
            np.save(work / f"{split}-images.npy", images)
            (work / f"{split}-scenes.json").write_text(json.dumps([s.to_dict() for s in scs]))
        steps.finish("render")
    loaded = {s: load_split(work, s) for s in SPLITS}
    images, scenes = {s: v[0] for s, v in loaded.items()}, {s: v[1] for s, v in loaded.items()}
    timings["render"], cpu_timings["render"] = time.time() - t, time.process_time() - c

    t, c = time.time(), time.process_time()
    if not steps.done("tokenizer"):
        docs = corpus_documents(cfg.lm.docs, seed, EOS)
        (out / "corpus.txt").write_text("".join(d.replace(EOS, "\n") for d in docs))
        bpe = train_bpe(docs + [c for s in scenes["pretrain"] for c in captions(s)])
        save_lm_tokenizer(bpe, work / "lm-tokenizer", cfg.lm.positions)
        save_clip_tokenizer(bpe, work / "clip-tokenizer", cfg.clip.context_length)
        steps.finish("tokenizer")
    timings["tokenizer"], cpu_timings["tokenizer"] = time.time() - t, time.process_time() - c

    stats: dict[str, dict] = {}
    t, c = time.time(), time.process_time()

    def fit_clip() -> dict:
        clip_images, clip_caps, clip_negs = clip_training_set(images["pretrain"], scenes["pretrain"], cfg.clip, seed)
        return train_clip(out / "clip", clip_images, clip_caps, work / "clip-tokenizer", cfg.clip, seed, clip_negs)

    stats["clip"] = steps.trained("clip", fit_clip)
    timings["clip"], cpu_timings["clip"] = time.time() - t, time.process_time() - c

    t, c = time.time(), time.process_time()
    stats["lm"] = steps.trained("lm", lambda: train_lm(out / "lm", work / "lm-tokenizer", cfg.lm, seed))
    timings["lm"], cpu_timings["lm"] = time.time() - t, time.process_time() - c

    encoder = Encoder(f"local-dir:{out / 'clip'}")
    t, c = time.time(), time.process_time()
    emb = {s: torch.cat([encoder.encode_images(images[s][i:i + 512]) for i in range(0, len(images[s]), 512)])
           for s in SPLITS}
    timings["embed"], cpu_timings["embed"] = time.time() - t, time.process_time() - c

    t, c = time.time(), time.process_time()
    stats["prior"] = steps.trained("prior", lambda: train_prior(
        out / "prior", encoder, emb["train"], [captions(s) for s in scenes["train"]], cfg.prior, seed))
    timings["prior"], cpu_timings["prior"] = time.time() - t, time.process_time() - c

    t, c = time.time(), time.process_time()
    stats["pixel"] = pixel_steps.trained("pixel", lambda: train_decoder(
        out / "pixel", images["pretrain"], emb["pretrain"], cfg.pixel, seed))
    timings["pixel"], cpu_timings["pixel"] = time.time() - t, time.process_time() - c

    t, c = time.time(), time.process_time()
    if not steps.done("shards"):
        _write_shards(out, cfg, images, scenes, emb, held, encoder_name=f"local-dir:{out / 'clip'}")
        steps.finish("shards")
    timings["shards"], cpu_timings["shards"] = time.time() - t, time.process_time() - c

    t, c = time.time(), time.process_time()
    rng = np.random.default_rng([seed, 7])
    test_caps = [random_caption(s, rng) for s in scenes["test"]]
    prior = EmbeddingPrior.from_pretrained(str(out / "prior"))
    quality = {
        "clip_zero_shot": evaluate.clip_zero_shot(encoder, emb["test"], scenes["test"], held),
        "lm": evaluate.lm_quality(str(out / "lm"), held, per_composition=4 if size != "tiny" else 1, seed=seed),
        "prior_retrieval": evaluate.prior_quality(encoder, prior, emb["test"], test_caps, scenes["test"], held),
    }
    timings["evaluate"], cpu_timings["evaluate"] = time.time() - t, time.process_time() - c
    t, c = time.time(), time.process_time()
    quality["pixel_decoder"] = decoder_quality(encoder, EmbeddingDecoder.from_pretrained(str(out / "pixel")), prior,
                                               emb["test"], test_caps, scenes["test"], held, cfg.pixel.eval_steps,
                                               cfg.pixel.eval_scenes)
    timings["evaluate_pixel"], cpu_timings["evaluate_pixel"] = time.time() - t, time.process_time() - c

    info = {
        "version": WORLD_VERSION, "size": size, "seed": seed, "config_hash": digest, "config": asdict(cfg),
        "held_out_compositions": sorted(held),
        "held_out_fraction": len(held) / 48,
        "splits": {s: {"samples": len(scenes[s]), "dir": f"data/{s}"} for s in SPLITS},
        "models": {
            "clip": {"path": "clip", "load": "open_clip.create_model_and_transforms('local-dir:' + world_folder + '/clip')",
                     "embed_dim": encoder.dim, "context_length": encoder.context_length, **stats["clip"]},
            "lm": {"path": "lm", "load": "transformers.AutoModelForCausalLM.from_pretrained", **stats["lm"]},
            "prior": {"path": "prior", "load": "diffusers.PriorTransformer.from_pretrained(subfolder='prior')",
                      **stats["prior"]},
            "pixel": {"path": "pixel", "kind": "unCLIP-style decoder: CLIP image embedding -> pixels",
                      "load": "diffusers.UNet2DConditionModel.from_pretrained(subfolder='decoder')", **stats["pixel"]},
        },
        "quality": quality,
        "hashes": {p.relative_to(out).as_posix(): sha256_file(p) for p in sorted(out.glob("*/*.safetensors"))
                   + sorted(out.glob("prior/prior/*.safetensors")) + sorted(out.glob("pixel/decoder/*.safetensors"))},
        "versions": _versions(),
        "timings_s": {k: round(v, 2) for k, v in timings.items()},
        "cpu_timings_s": {k: round(v, 2) for k, v in cpu_timings.items()},
        "machine": {"cpus": torch.get_num_threads(), "platform": platform.platform()},
    }
    world_json.write_text(json.dumps(info, indent=1))
    return json.loads(world_json.read_text())


def _write_shards(out: Path, cfg: WorldConfig, images, scenes, emb, held: set[str], encoder_name: str) -> None:
    from contracts.shards import ShardWriter, make_sample, sample_key
    from generators.world.annotate import captions

    for split in SPLITS:
        d = out / "data" / split
        if d.exists():
            shutil.rmtree(d)
        writer = ShardWriter(d, f"world-{split}", cfg.shard_size)
        rng = np.random.default_rng([cfg.seed, 200 + SPLITS.index(split)])
        for i, (img, scene) in enumerate(zip(images[split], scenes[split], strict=False)):
            phr = captions(scene)
            txt = phr[int(rng.integers(len(phr)))]
            meta = {"source": "real", "split": split, "concepts": list(scene.compositions), "scene": scene.to_dict(),
                    "captions": phr, "held_out": any(c in held for c in scene.compositions),
                    "encoder": encoder_name, "world_seed": cfg.seed}
            writer.write(make_sample(sample_key(f"world-{cfg.seed}-{split}", i), txt, emb[split][i].numpy(), meta,
                                     png=_png(img)))
        writer.close()


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for pkg in ("synth2", "torch", "transformers", "diffusers", "open_clip_torch", "tokenizers", "webdataset"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = "not installed"
    return out

