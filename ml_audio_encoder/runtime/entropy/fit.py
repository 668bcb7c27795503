"""Fitting :class:`~.priors.Priors` to a model's codes (``train/ship.py``, ``train/fit_priors.py``).

Counting is exact and cheap; the only choices are the backoff strengths ``beta`` of each context stage and level,
picked from :data:`BETA_GRID` by two-fold cross-validation over the given sequences (files), stage by stage in
application order. The same held-out costs become the priors' ``expected_bits`` (what ``mlae compress --kbps``
plans with), so they are honest estimates for audio the priors have not seen, not the fitting data's own entropy.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from .priors import MAX_CODEBOOK, PRIORS_FORMAT, PRIORS_VERSION, Priors, context_arrays, stage_keys

# Backoff strengths tried. The fine levels of fast_24khz want strong backoff (their contexts see a few hundred codes
# spread over 1024): with the grid ending at 256 every level >= 1 took 256, and reaching 4096 saved 1.3 points
# more at 12 levels on the dev split (docs/entropy_coding.md).
BETA_GRID = tuple(float(2.0**e) for e in range(-1, 13))  # 0.5 .. 4096
ALPHA = 0.5  # add-alpha smoothing of the static counts
# (context, code) pairs seen fewer times are pruned. Fitted on the training split coded at four offsets
# (train/fit_priors.py), dev split, 12 levels, speech: 2 -> 18.7% saved, 6.2M entries; 3 -> 18.0%, 4.2M; 4 -> 17.3%,
# 3.0M. At eight offsets (twice the counts) with the step-61,742 codes: 3 -> 17.3%, 7.9M; 4 -> 17.0%, 6.1M; 5 -> 16.7%,
# 4.9M; 6 -> 16.3%, 4.0M, where four offsets and 3 gave 16.0%, 4.5M (docs/entropy_coding.md). With 129 minutes more
# music (step-74,715 codes, music / speech at 12 levels): 4 -> 16.9% / 16.5%, 8.9M; 5 -> 16.6% / 16.2%, 7.5M; 6 ->
# 16.5% / 15.9%, 6.4M, where the pack alone and 4 gave 15.5% / 16.2%, 6.3M.
MIN_COUNT = 5
# stage -> levels it models, in chain order (the later stage has the last word). Measured on the development split
# with fast_24khz's codes fitted on the whole training pack (docs/entropy_coding.md): the previous frame predicts
# every level, not only the first (bits per code 9.0 -> 7.0 at 8 levels on speech), better on top of the coarse
# stage than under it; the (prev, coarse) pair stage added 0.2% for 6% more table.
STAGE_PLAN = (("coarse", "rest"), ("prev", "all"))
_LEVELS = {"first": lambda q: q == 0, "rest": lambda q: q > 0, "all": lambda q: q >= 0}


class _Samples:
    """Every symbol of the sequences with its level and contexts, flat."""

    def __init__(self, sequences: Sequence[np.ndarray], k: int, lane_frames: int | None = None):
        parts = [context_arrays(np.asarray(s, np.int64)[None], k, lane_frames) for s in sequences]
        self.levels, self.prev, self.coarse, self.codes = (np.concatenate([p[i] for p in parts]) if parts
                                                           else np.zeros(0, np.int64) for i in range(4))


def _stage_keys(name: str, s: _Samples, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(mask of the symbols the stage models, their table keys)."""
    return _LEVELS[dict(STAGE_PLAN)[name]](s.levels), stage_keys(name, s.levels, s.prev, s.coarse, k)


def _table(keys: np.ndarray, codes: np.ndarray, k: int, min_count: int = 1) -> dict[str, np.ndarray]:
    """Sparse counts of (key, code): sorted unique keys, row pointers, codes (increasing per row), counts."""
    joint, counts = np.unique(keys * k + codes, return_counts=True)
    keep = counts >= min_count
    joint, counts = joint[keep], counts[keep]
    row_keys, starts = np.unique(joint // k, return_index=True)
    ptr = np.concatenate([starts, [joint.size]]).astype(np.int64)
    return {"keys": row_keys.astype(np.int64), "ptr": ptr, "codes": (joint % k).astype(np.uint16),
            "counts": counts.astype(np.uint32), "joint": joint}


def _lookup(table: dict[str, np.ndarray], keys: np.ndarray, codes: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(n(ctx, c), n(ctx)) of each query from a :func:`_table`."""
    n_joint = np.zeros(keys.size)
    n_ctx = np.zeros(keys.size)
    if table["keys"].size:
        joint = keys * k + codes
        i = np.minimum(np.searchsorted(table["joint"], joint), table["joint"].size - 1)
        hit = table["joint"][i] == joint
        n_joint[hit] = table["counts"][i[hit]]
        totals = np.add.reduceat(table["counts"].astype(np.int64), table["ptr"][:-1])
        j = np.minimum(np.searchsorted(table["keys"], keys), table["keys"].size - 1)
        hit = table["keys"][j] == keys
        n_ctx[hit] = totals[j[hit]]
    return n_joint, n_ctx


def _static_p(s: _Samples, q: int, k: int, alpha: float) -> np.ndarray:
    counts = np.zeros((q, k))
    np.add.at(counts, (s.levels, s.codes), 1.0)
    return (counts + alpha) / (counts.sum(axis=1, keepdims=True) + alpha * k)


def _folds(sequences: Sequence[np.ndarray],
           groups: Sequence[int] | None = None) -> list[tuple[list[np.ndarray], list[np.ndarray]]]:
    """Two folds by alternating groups (each sequence its own group by default; the halves of a lone sequence).
    Sequences of one group (the same audio coded at several offsets) stay in one fold, so that the held-out
    costs do not see the audio they were fitted on."""
    seqs = list(sequences)
    if len(seqs) == 1:
        f = seqs[0].shape[1]
        return [([seqs[0][:, : f // 2]], [seqs[0][:, f // 2 :]]), ([seqs[0][:, f // 2 :]], [seqs[0][:, : f // 2]])]
    names = list(range(len(seqs))) if groups is None or len(set(groups)) < 2 else list(groups)
    fold = {g: i % 2 for i, g in enumerate(dict.fromkeys(names))}  # in order of first appearance
    a = [s for s, g in zip(seqs, names) if fold[g] == 0]
    b = [s for s, g in zip(seqs, names) if fold[g] == 1]
    return [(a, b), (b, a)]


def _held_out(folds, q: int, k: int, alpha: float, betas: dict[str, np.ndarray], upto: int,
              candidates: Sequence[float] | None = None, lane_frames: int | None = None, min_count: int = MIN_COUNT):
    """Held-out bits per level of the static prior and of the chain of the first ``upto`` stages.

    With ``candidates``, the last of those stages is evaluated at every candidate beta: returns ``(static bits
    (q,), chain bits (len(candidates), q))`` summed over both folds, and the symbol count per level."""
    cands = [None] if candidates is None else list(candidates)
    static_bits, chain_bits, per_level = np.zeros(q), np.zeros((len(cands), q)), np.zeros(q)
    for fit_seqs, test_seqs in folds:
        fit, test = _Samples(fit_seqs, k, lane_frames), _Samples(test_seqs, k, lane_frames)
        if not test.codes.size:
            continue
        p = _static_p(fit, q, k, alpha)[test.levels, test.codes]
        static_bits += np.bincount(test.levels, -np.log2(p), q)
        per_level += np.bincount(test.levels, minlength=q)
        for i, (name, _) in enumerate(STAGE_PLAN[:upto]):
            mask_fit, keys_fit = _stage_keys(name, fit, k)
            table = _table(keys_fit[mask_fit], fit.codes[mask_fit], k, min_count)
            mask, keys = _stage_keys(name, test, k)
            n_joint, n_ctx = _lookup(table, keys, test.codes, k)
            use = mask & (n_ctx > 0)
            if i == upto - 1 and candidates is not None:
                for j, beta in enumerate(cands):
                    pj = p.copy()
                    pj[use] = (n_joint[use] + beta * p[use]) / (n_ctx[use] + beta)
                    chain_bits[j] += np.bincount(test.levels, -np.log2(pj), q)
                break
            beta = betas[name][test.levels[use]]
            p[use] = (n_joint[use] + beta * p[use]) / (n_ctx[use] + beta)
        else:
            chain_bits[0] += np.bincount(test.levels, -np.log2(p), q)
    return static_bits, chain_bits, per_level


def fit_priors(sequences: Sequence[np.ndarray], codebook_size: int, fingerprint: str, preset: str = "",
               lane_frames: int | None = None, alpha: float = ALPHA, beta_grid: Sequence[float] = BETA_GRID,
               fit_info: dict[str, Any] | None = None, groups: Sequence[int] | None = None,
               min_count: int = MIN_COUNT) -> Priors:
    """Fit priors to code sequences ``(levels, frames)`` (one per file or excerpt, all levels of the model).

    ``lane_frames`` (the coder's lane length at the model's frame rate, :func:`.coder.block_layout`) makes the
    previous-frame contexts start afresh where the coder's lanes do, as in files.
    ``fingerprint`` is the weights' SHA-256 (``model.fingerprint()``): the priors are refused with other weights.
    ``fit_info`` (what data, how much) is stored in the priors' metadata.
    ``groups`` (one label per sequence) keeps sequences of the same audio in one cross-validation fold.
    ``min_count``: (context, code) pairs seen fewer times are left out of the tables (and of the held-out fits).
    """
    t0 = time.perf_counter()
    if groups is not None:
        if len(groups) != len(sequences):
            raise ValueError(f"{len(groups)} groups for {len(sequences)} sequences")
        groups = [g for g, s in zip(groups, sequences) if np.asarray(s).shape[-1] > 0]
    seqs = [np.asarray(s, np.int64) for s in sequences if np.asarray(s).shape[-1] > 0]
    k = int(codebook_size)
    if not seqs or len({s.shape[0] for s in seqs}) != 1 or seqs[0].ndim != 2:
        raise ValueError("fit_priors needs code sequences (levels, frames) with the same number of levels")
    if not 2 <= k <= MAX_CODEBOOK:
        raise ValueError(f"priors hold codebooks of 2..{MAX_CODEBOOK} codes, not {k}")
    if min(int(s.min()) for s in seqs) < 0 or max(int(s.max()) for s in seqs) >= k:
        raise ValueError(f"codes must be in 0..{k - 1}")
    q = seqs[0].shape[0]
    folds = _folds(seqs, groups)

    # beta per stage and level, greedily in stage order, each on top of the stages already tuned
    betas = {name: np.ones(q) for name, _ in STAGE_PLAN}
    for i, (name, _) in enumerate(STAGE_PLAN):
        _, bits, _ = _held_out(folds, q, k, alpha, betas, i + 1, beta_grid, lane_frames, min_count)
        betas[name] = np.asarray(beta_grid, np.float64)[np.argmin(bits, axis=0)]
    static_bits, chain_bits, per_level = _held_out(folds, q, k, alpha, betas, len(STAGE_PLAN), None, lane_frames,
                                                   min_count)
    per_level = np.maximum(per_level, 1)

    everything = _Samples(seqs, k, lane_frames)
    arrays: dict[str, np.ndarray] = {}
    counts = np.zeros((q, k), np.int64)
    np.add.at(counts, (everything.levels, everything.codes), 1)
    arrays["static_counts"] = counts.astype(np.uint32)
    for name, _ in STAGE_PLAN:
        mask, keys = _stage_keys(name, everything, k)
        table = _table(keys[mask], everything.codes[mask], k, min_count)
        for part in ("keys", "ptr", "codes", "counts"):
            arrays[f"{name}_{part}"] = table[part]
        arrays[f"{name}_beta"] = betas[name]
    frames = int(sum(s.shape[1] for s in seqs))
    meta = {
        "format": PRIORS_FORMAT,
        "format_version": PRIORS_VERSION,
        "fingerprint": fingerprint,
        "preset": preset,
        "codebook_size": k,
        "n_levels": q,
        "alpha": float(alpha),
        "stages": [name for name, _ in STAGE_PLAN],
        "expected_bits": {"static": (static_bits / per_level).round(4).tolist(),
                          "context": (chain_bits[0] / per_level).round(4).tolist()},
        "lane_frames": int(lane_frames or 0),
        "fit": {"sequences": len(seqs), "frames": frames, "seconds_fitting": round(time.perf_counter() - t0, 2),
                **(fit_info or {})},
    }
    return Priors(meta, arrays, name=f"priors for {preset or fingerprint[:12]}")


__all__ = ["ALPHA", "BETA_GRID", "MIN_COUNT", "fit_priors"]
