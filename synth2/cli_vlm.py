"""`synth2 vlm train | eval`: thin commands over vlm.train and vlm.evaluate."""

from __future__ import annotations

import json

import click


def source_error(e: BaseException) -> str:
    """One line for a source that could not be read, with what to do about it (a service URL's key, a job id,
    a service that is not there)."""
    import os
    import urllib.error

    msg = str(e.reason if isinstance(e, urllib.error.URLError) and not isinstance(e, urllib.error.HTTPError)
              else e)
    if "HTTP 401" in msg or "HTTP 403" in msg:
        service = os.environ.get("SYNTH2_URL") or "http://127.0.0.1:8000"
        if not os.environ.get("SYNTH2_API_KEY"):
            return f"{msg}: the service needs an API key; set SYNTH2_API_KEY (and SYNTH2_URL, if the service is " \
                   f"not {service})"
        return f"{msg}: the key was refused, or not sent (SYNTH2_API_KEY goes only to SYNTH2_URL, {service})"
    if "HTTP 404" in msg:
        return f"{msg}: no such job on that service, or it has no shards yet (`synth2 jobs list` shows its jobs)"
    if isinstance(e, urllib.error.URLError) or isinstance(e, ConnectionError):
        return f"cannot reach the data source ({msg}): is the service running, and is the URL right?"
    return msg


@click.group()
def vlm() -> None:
    """Finetune the VLM on shards and evaluate it."""


@vlm.command("train")
@click.option("--data", "sources", multiple=True, required=True,
              help="Shard directory, .tar pattern or service job URL, with an optional @WEIGHT (e.g. runs/demo@0.3). "
                   "Repeat to mix sources.")
@click.option("--decoder", required=True, help="Causal LM: local path or hub id (e.g. world/lm, gpt2).")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Output directory (model, checkpoints, metrics).")
@click.option("--steps", type=click.IntRange(1), default=500, show_default=True)
@click.option("--batch-size", type=click.IntRange(1), default=64, show_default=True)
@click.option("--lr", type=click.FloatRange(0, min_open=True), default=1e-3, show_default=True, help="Mapper learning rate.")
@click.option("--decoder-lr", type=click.FloatRange(0), default=None, help="Decoder learning rate (default lr/10).")
@click.option("--prefix-length", type=click.IntRange(1, 256), default=4, show_default=True)
@click.option("--mapper", type=click.Choice(["mlp", "transformer"]), default="mlp", show_default=True)
@click.option("--freeze-decoder", is_flag=True, help="Train the mapper only (ClipCap's frozen-LM setting).")
@click.option("--lora-r", type=click.IntRange(0), default=0, show_default=True,
              help="LoRA rank on the decoder (needs the lora extra: pip install 'synth2[lora]').")
@click.option("--noise-std", type=click.FloatRange(0), default=0.0, show_default=True,
              help="Gaussian noise added to image embeddings while training (CapDec), against the synthetic/real gap.")
@click.option("--noise-on", type=click.Choice(["synthetic", "all"]), default="synthetic", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--ckpt-every", type=click.IntRange(1), default=100, show_default=True)
@click.option("--workers", type=click.IntRange(0), default=0, show_default=True, help="DataLoader worker processes.")
@click.option("--threads", type=click.IntRange(1), default=None, help="torch CPU threads.")
@click.option("--ray-workers", type=click.IntRange(0), default=0, show_default=True,
              help="> 0: train with Ray Train (TorchTrainer, DDP) on this many workers.")
@click.option("--gpu", is_flag=True, help="With --ray-workers: one GPU per worker.")
@click.option("--ray-address", default=None, help="With --ray-workers: the cluster to join (default: a local Ray).")
@click.option("--force", is_flag=True, help="Start over in --out, discarding its checkpoints.")
def vlm_train(sources, decoder, out, steps, batch_size, lr, decoder_lr, prefix_length, mapper, freeze_decoder, lora_r,
              noise_std, noise_on, seed, ckpt_every, workers, threads, ray_workers, gpu, ray_address, force) -> None:
    """Finetune the VLM; resumes from the last checkpoint in --out (a run with the same settings)."""
    from vlm.train import TrainConfig, train, train_ray

    try:
        cfg = TrainConfig(sources=list(sources), decoder=decoder, out=out, steps=steps, batch_size=batch_size, lr=lr,
                          decoder_lr=decoder_lr, prefix_length=prefix_length, mapper=mapper,
                          freeze_decoder=freeze_decoder, lora_r=lora_r, noise_std=noise_std, noise_on=noise_on,
                          seed=seed, ckpt_every=ckpt_every, num_workers=workers, threads=threads)
        res = train_ray(cfg, ray_workers, gpu, ray_address, force) if ray_workers else train(cfg, force)
    except (ValueError, OSError) as e:  # a source that cannot be read: one line, no traceback
        raise click.ClickException(source_error(e)) from None
    click.echo(json.dumps(res, indent=1))
    click.echo(f"model: {out}/model   loss plot: {out}/loss.png")


@vlm.command("eval")
@click.option("--model", required=True, type=click.Path(exists=True, file_okay=False), help="A `synth2 vlm train` model dir.")
@click.option("--data", required=True, help="Test shards (directory or URL): real images with references.")
@click.option("--beams", default="1,3", show_default=True, help="Decodings: 1 = greedy, k = beam search of width k.")
@click.option("--limit", type=click.IntRange(1), default=None, help="Evaluate the first N samples only.")
@click.option("--stored-embeddings", is_flag=True,
              help="Use the shards' emb.npy instead of encoding their images through the checkpoint's encoder.")
@click.option("--out", default=None, type=click.Path(dir_okay=False), help="Write the full result as JSON here.")
def vlm_eval(model, data, beams, limit, stored_embeddings, out) -> None:
    """Caption real images and score them: BLEU-4, CIDEr, and on the embedded world per-attribute and
    held-out composition accuracy."""
    from vlm.evaluate import evaluate, summary_table

    try:
        nb = tuple(int(b) for b in beams.split(","))
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers (got {beams!r})", param_hint="--beams") from None
    try:
        res = evaluate(model, data, nb, use_images=not stored_embeddings, limit=limit, out=out)
    except (ValueError, OSError) as e:
        raise click.ClickException(source_error(e)) from None
    click.echo(f"{res['samples']} samples of {data} (images encoded: {res['images_encoded']})")
    world = any("world" in r for r in res["decoding"].values())
    click.echo(eval_table(res, constant_baseline(data, limit)) if world else summary_table(res))
    if world:
        click.echo("\n" + kind_table(res))
    for ex in next(iter(res["decoding"].values()))["examples"][:4]:
        click.echo(f"  {ex['prediction']!r:60}  ref: {ex['reference']!r}")
    if out:
        click.echo(f"result: {out}")


EVAL_COLUMNS = ("colour", "shape", "size", "count", "relation", "composition")


def _ci(p: float | None, n: int) -> str:
    """An accuracy with its 95% interval half-width (normal approximation of the binomial): `0.45 ± 0.03`."""
    if p is None or not n:
        return "–"
    return f"{p:.2f} ± {1.96 * (p * (1 - p) / n) ** 0.5:.2f}"


def constant_baseline(data: str, limit: int | None) -> dict:
    """Scores of the one-caption-for-all baseline: every sample captioned with the test set's most frequent
    reference (what a model that ignores its image can reach)."""
    from collections import Counter

    from vlm.evaluate import coco_scores, read_all, world_scores

    samples = read_all(data)[:limit]
    refs = [s["meta"].get("captions") or [s["txt"]] for s in samples]
    caption = Counter(r[0] for r in refs).most_common(1)[0][0]
    preds = [caption] * len(samples)
    out = coco_scores(preds, refs) | {"caption": caption}
    w = world_scores(preds, [s["meta"] for s in samples])
    return out | ({"world": w} if w is not None else {})


def kind_table(res: dict) -> str:
    """Composition accuracy by scene kind, seen and held-out, per decoding: where the held-out figure comes
    from (a two-object relation scene is right only when both objects are, and holds a held-out composition
    about twice as often as a one-object scene)."""
    kinds = sorted({k for r in res["decoding"].values() for k in (r.get("world") or {}).get("composition_by_kind", {})})
    head = "| composition by kind | " + " | ".join(f"{k} seen | {k} held-out" for k in kinds) + " |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for name, r in res["decoding"].items():
        by = (r.get("world") or {}).get("composition_by_kind", {})
        cells = [_ci(by.get(k, {}).get(p, {}).get("accuracy"), by.get(k, {}).get(p, {}).get("n", 0))
                 for k in kinds for p in ("seen", "held_out")]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def eval_table(res: dict, baseline: dict | None = None) -> str:
    """The evaluation as a markdown table: one row per decoding and one for the constant-caption baseline,
    accuracies with 95% intervals, and the number of samples each column scores (an attribute is scored only
    where the scene has it: relations only in two-object scenes)."""
    head = "| decoding | BLEU-4 | CIDEr | " + " | ".join(EVAL_COLUMNS) + " | held-out comp. |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    rows = list(res["decoding"].items()) + ([("baseline: one caption for all", baseline)] if baseline else [])
    first = None
    for name, r in rows:
        w = r.get("world") or {}
        a = w.get("attributes", {})
        first = first or w
        cells = [name, f"{r['bleu4']:.3f}", f"{r['cider']:.3f}"]
        cells += [_ci(a.get(k, {}).get("accuracy"), a.get(k, {}).get("n", 0)) for k in EVAL_COLUMNS]
        h = w.get("held_out_composition", {})
        cells.append(_ci(h.get("accuracy"), h.get("n", 0)))
        lines.append("| " + " | ".join(cells) + " |")
    if first:
        n = [str(first["attributes"].get(k, {}).get("n", 0)) for k in EVAL_COLUMNS]
        lines.append("| samples scored | " + str(res["samples"]) + " | " + str(res["samples"]) + " | "
                     + " | ".join(n) + f" | {first.get('held_out_composition', {}).get('n', 0)} |")
    if baseline:
        lines.append(f"\nbaseline caption: {baseline['caption']!r}; ± is a 95% interval over the samples scored")
    return "\n".join(lines)
