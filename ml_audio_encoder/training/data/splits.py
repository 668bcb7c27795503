"""Deterministic ``train`` / ``dev`` splits: speaker-disjoint, gender-balanced where labels allow, stable across
machines and Python versions (SHA-1 of stable keys, no RNG state)."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence

from .manifest import _norm_gender, _parse_bool, _parse_float

__all__ = ["stable_hash", "assign_splits"]


def stable_hash(key: str, salt: str = "") -> float:
    """A number in [0, 1) from SHA-1 of ``salt + key``: stable across machines, Python versions and runs."""
    h = hashlib.sha1((salt + key).encode("utf-8")).hexdigest()
    return int(h[:15], 16) / float(16 ** 15)


def _get(rec, name, default=""):
    if isinstance(rec, dict):
        return rec.get(name, default)
    return getattr(rec, name, default)


def assign_splits(records: Sequence, dev_fraction: float = 0.1, dev_speakers_per_class: int = 1,
                  salt: str = "mlae-split-v1") -> list[str]:
    """Deterministic ``train``/``dev`` split; returns one label per record (dicts or :class:`AudioItem`).

    * Records are grouped: by ``speaker`` when known (all clips of a speaker fall on one side), else by ``group``
      (e.g. a drum kit folder) when the record has one, else by ``path``.
    * Speakers with a gender label: within each (gender, full_band) class that has at least two speakers, the
      ``dev_speakers_per_class`` speakers with the lowest hash among the smaller half of the class (by total
      ``duration_s``, when known) go to dev, the others to train. So dev and train both hold speech of both genders
      wherever the labels allow, dev stays small, and no speaker is on both sides.
    * Every other group goes to dev when ``stable_hash(group) < dev_fraction``.
    ``path`` should be stable (relative to the data folder), so that the split does not depend on where data lives.
    """
    keys = []
    for r in records:
        spk = str(_get(r, "speaker", "") or "")
        grp = str(_get(r, "group", "") or "")
        keys.append(("spk:" + spk) if spk else ("grp:" + grp) if grp else ("path:" + str(_get(r, "path"))))
    # speaker -> (gender, full_band) by majority over its clips
    votes: dict[str, dict] = {}
    minutes: dict[str, float] = {}
    for r, k in zip(records, keys):
        if not k.startswith("spk:"):
            continue
        dur = _parse_float(_get(r, "duration_s", ""), 0.0)
        minutes[k] = minutes.get(k, 0.0) + (dur if math.isfinite(dur) else 0.0)
        g = _norm_gender(_get(r, "gender", ""))
        fb = _get(r, "full_band", True)
        fb = _parse_bool(fb, True) if not isinstance(fb, bool) else fb
        v = votes.setdefault(k, {})
        v[(g, fb)] = v.get((g, fb), 0) + 1
    spk_class = {k: max(v.items(), key=lambda kv: (kv[1], kv[0]))[0] for k, v in votes.items()}
    classes: dict[tuple, list[str]] = {}
    for k, c in spk_class.items():
        if c[0]:
            classes.setdefault(c, []).append(k)
    decided: dict[str, str] = {}
    for spks in classes.values():
        if len(spks) < 2:
            decided.update({s: "train" for s in spks})
            continue
        by_size = sorted(spks, key=lambda s: (minutes.get(s, 0.0), s))
        n_dev = min(dev_speakers_per_class, len(spks) - 1)
        pool = by_size[:max(n_dev, (len(spks) + 1) // 2)]
        chosen = set(sorted(pool, key=lambda s: (stable_hash(s, salt), s))[:n_dev])
        for s in spks:
            decided[s] = "dev" if s in chosen else "train"
    out = []
    for k in keys:
        if k not in decided:
            decided[k] = "dev" if stable_hash(k, salt) < dev_fraction else "train"
        out.append(decided[k])
    return out
