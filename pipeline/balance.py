"""Per-concept balancing (MetaCLIP / SynthCLIP style) from distributed counts: a quota per concept
signature from the signature counts alone (`cap` or `target`), then each caption's seeded keep
decision within its signature group (`balance_kernel`), so that the kept set depends only on the
spec and the captions."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping

import numpy as np

from pipeline.kernels import _by_index, _take, unit_hash

log = logging.getLogger(__name__)

SEP = "\x1f"  # joins a caption's sorted concepts into its signature


def balance_kernel(batch: Mapping[str, np.ndarray], quota: Mapping[str, int], seed: int) -> dict[str, np.ndarray]:
    """Whole signature groups in; a group keeps its `quota[signature]` captions with the lowest
    seeded hash of (seed, index). Returns only the kept rows."""
    b = dict(batch)
    b["u"] = unit_hash("balance", seed, b["index"])
    b = _by_index(b, "signature", "u")
    sig = b["signature"]
    n = len(sig)
    keep = np.zeros(n, dtype=bool)
    bounds = np.r_[0, np.nonzero(sig[1:] != sig[:-1])[0] + 1, n] if n else np.array([0])
    for s, e in zip(bounds[:-1], bounds[1:], strict=True):
        keep[s:s + int(quota.get(str(sig[s]), e - s))] = True
    out = _take(b, keep)
    return {"index": out["index"], "matched": out["matched"], "nearest": out["nearest"]}


def concept_counts(sig_counts: Mapping[str, int]) -> dict[str, int]:
    counts: Counter = Counter()
    for sig, n in sig_counts.items():
        for c in sig.split(SEP) if sig and n else []:
            counts[c] += n
    return dict(counts)


def balance_quotas(sig_counts: Mapping[str, int], method: str, cap: int | None = None,
                   target: Mapping[str, float] | None = None) -> tuple[dict[str, int], dict]:
    """Captions to keep per concept signature, from the signature counts alone. `cap`: a caption
    is kept at rate min over its concepts of t / count(concept), t = `cap` or the median count
    (MetaCLIP); `target`: keep rates fitted so that concept shares match `target`
    (concepts absent from `target` get share 0). Returns (quota per signature, info for stats)."""
    sigs = {s: int(n) for s, n in sig_counts.items()}
    counts = concept_counts(sigs)
    info: dict = {}
    if method == "none" or not sigs:
        return sigs, info
    if method == "cap":
        t = cap if cap is not None else int(np.median(list(counts.values()))) if counts else 1
        info["cap"] = t
        p = {s: min((min(t / counts[c], 1.0) for c in s.split(SEP)), default=1.0) if s else 1.0 for s in sigs}
    elif method == "target":
        p, info = _target_rates(sigs, counts, dict(target or {}))
    else:
        raise ValueError(f"unknown balance method {method!r}; expected none, cap or target")
    return {s: int(np.floor(p[s] * n + 0.5)) for s, n in sigs.items()}, info


def _target_rates(sigs: dict[str, int], counts: dict[str, int], target: dict[str, float]) -> tuple[dict, dict]:
    """Per-signature keep rates q_S = min(1, min over its concepts of f_c), with the per-concept
    factors f fitted (multiplicatively, a few hundred steps) so that kept concept counts are
    proportional to the target shares. Captions naming a concept outside the target are dropped."""
    missing = sorted(c for c, s in target.items() if s > 0 and counts.get(c, 0) == 0)
    live = {c: s for c, s in target.items() if s > 0 and counts.get(c, 0) > 0}
    info = {"target_missing": missing}
    if not live:
        return {s: 0.0 for s in sigs}, info
    total = sum(live.values())
    share = {c: s / total for c, s in live.items()}
    names = sorted(share)
    pos = {c: i for i, c in enumerate(names)}
    d = np.array([share[c] for c in names])
    usable = [s for s in sigs if s and all(c in pos for c in s.split(SEP))]
    members = [np.array([pos[c] for c in s.split(SEP)]) for s in usable]
    n = np.array([sigs[s] for s in usable], dtype=np.float64)
    avail = np.array([counts[c] for c in names], dtype=np.float64)
    f = d * min(avail / d) / avail  # the single-concept answer: exact when no caption names two concepts

    def rates(f: np.ndarray) -> np.ndarray:
        raw = np.array([f[m].min() for m in members])
        return np.minimum(1.0, raw / max(raw.max(initial=0.0), 1e-300))  # shares are scale-free: keep the most

    def error(q: np.ndarray) -> tuple[float, float]:
        kept = np.zeros(len(names))
        for m, qs, ns in zip(members, q, n, strict=True):
            kept[m] += qs * ns
        return float(np.abs(kept / max(kept.sum(), 1e-12) - d).max()), kept

    best = None
    for _ in range(300):
        q = rates(f)
        err, kept = error(q)
        if best is None or err < best[0] - 1e-9 or (abs(err - best[0]) <= 1e-9 and (q * n).sum() > best[2]):
            best = (err, q, (q * n).sum())  # an unreachable target (shares tied by shared captions) ends nearest
        ratio = np.maximum(kept, 1e-12) / d
        level = np.exp(np.sum(d * np.log(ratio)))
        if np.max(np.abs(ratio / level - 1)) < 1e-4:
            break
        f = np.maximum(f * np.sqrt(level / ratio), 1e-12)
    info["target_error"] = round(best[0], 4)
    q = dict(zip(usable, best[1], strict=True))
    return {s: float(q.get(s, 0.0)) for s in sigs}, info


def balance_stats(sig_counts: Mapping[str, int], quota: Mapping[str, int], method: str, info: dict,
                  target: Mapping[str, float] | None) -> dict:
    before = concept_counts(sig_counts)
    after_sig = {s: min(int(quota.get(s, n)), n) for s, n in sig_counts.items()}
    after = concept_counts(after_sig)
    n0, n1 = sum(sig_counts.values()), sum(after_sig.values())
    out = {"method": method, "before": n0, "after": n1, "dropped": n0 - n1,
           "dropped_fraction": round((n0 - n1) / n0, 4) if n0 else 0.0, **info}
    if method == "target" and target:
        live = {c: s for c, s in target.items() if s > 0}
        tot_t, tot_a = sum(live.values()), sum(after.get(c, 0) for c in live) or 1
        out["target_shares"] = {c: round(s / tot_t, 4) for c, s in sorted(live.items())}
        out["achieved_shares"] = {c: round(after.get(c, 0) / tot_a, 4) for c in sorted(live)}
    if method != "none" and n0 and (n0 - n1) / n0 > 0.5:
        log.warning("balancing (%s) dropped %d of %d captions (%.0f%%)", method, n0 - n1, n0, 100 * (n0 - n1) / n0)
    return {"before": before, "after": after, "balance": out}


def balance(concepts: list[list[str]], indices: list[int], method: str, cap: int | None = None,
            target: dict[str, float] | None = None, seed: int = 0) -> np.ndarray:
    """Per-concept rebalancing (MetaCLIP / SynthCLIP style) of captions given their concepts:
    the rule of `balance_quotas` (`cap`: rate t / count per concept, t = `cap` or
    the median count; `target`: concept shares fitted to `target`), each concept signature keeping
    its quota of captions with the lowest seeded hash of (seed, index). Returns a keep mask."""
    n = len(concepts)
    sigs = np.array([SEP.join(sorted(set(cs))) for cs in concepts], dtype=object)
    quota, _ = balance_quotas(Counter(sigs.tolist()), method, cap, target)
    pos = np.arange(n)
    kept = balance_kernel({"index": np.asarray(indices, dtype=np.int64), "signature": sigs, "matched": pos,
                           "nearest": pos}, quota, seed)
    keep = np.zeros(n, dtype=bool)
    keep[kept["matched"].astype(int)] = True
    return keep
