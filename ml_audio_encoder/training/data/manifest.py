"""Data manifests: which audio files there are and their labels (domain, source, speaker, gender, language, split).

No Keras, no TensorFlow: ``train/get_data.py`` and ``train/make_pack.py`` write manifests without loading either.

Sources are either a manifest CSV (columns ``path, domain, source, speaker, gender, language, duration_s,
sample_rate, channels, full_band, split``; only ``path`` is required, relative paths are relative to the CSV's
folder), a folder of audio files (domain from a ``speech``/``music``/``general`` path component, or given), or a
folder holding ``manifest.csv`` / ``pack_manifest.csv`` (a data pack made by ``train/make_pack.py``).
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, replace

import soundfile as sf

from ...runtime.audio_io import AUDIO_EXTENSIONS, iter_audio_files

__all__ = [
    "DOMAINS",
    "AUDIO_EXTENSIONS",
    "iter_audio_files",
    "MANIFEST_COLUMNS",
    "AudioItem",
    "load_manifest",
    "write_manifest",
    "scan_folder",
    "load_items",
    "require_items",
    "filter_items",
    "summarize_items",
]

DOMAINS = ("speech", "music", "general")
DOMAINS = ("speech", "music", "general")
MANIFEST_COLUMNS = (
    "path", "domain", "source", "speaker", "gender", "language",
    "duration_s", "sample_rate", "channels", "full_band", "split",
)
_DOMAIN_ALIASES = {
    "speech": "speech", "voice": "speech", "voices": "speech", "vocal": "speech",
    "music": "music", "songs": "music",
    "general": "general", "sound": "general", "sounds": "general", "effects": "general", "sfx": "general",
    "noise": "general", "environment": "general",
}
_PACK_MANIFESTS = ("pack_manifest.csv", "manifest.csv")


@dataclass(frozen=True)
class AudioItem:
    """One audio file and its labels. ``path`` is absolute once loaded."""

    path: str
    domain: str = "general"
    source: str = ""
    speaker: str = ""
    gender: str = ""
    language: str = ""
    duration_s: float = float("nan")
    sample_rate: int = 0
    channels: int = 0
    full_band: bool = True
    split: str = "train"

    def to_row(self, relative_to: str | None = None) -> dict:
        row = asdict(self)
        if relative_to is not None:
            row["path"] = os.path.relpath(self.path, relative_to).replace(os.sep, "/")
        row["full_band"] = "true" if self.full_band else "false"
        row["duration_s"] = "" if not math.isfinite(self.duration_s) else f"{self.duration_s:.3f}"
        row["sample_rate"] = str(int(self.sample_rate)) if self.sample_rate else ""
        row["channels"] = str(int(self.channels)) if self.channels else ""
        return row


def _parse_bool(value, default=True) -> bool:
    if value is None:
        return default
    v = str(value).strip().lower()
    if v == "":
        return default
    if v in ("1", "true", "t", "yes", "y"):
        return True
    if v in ("0", "false", "f", "no", "n"):
        return False
    raise ValueError(f"not a boolean: {value!r}")


def _parse_float(value, default=float("nan")) -> float:
    try:
        return float(value) if value not in (None, "") else default
    except ValueError:
        return default


def _parse_int(value, default=0) -> int:
    try:
        return int(float(value)) if value not in (None, "") else default
    except ValueError:
        return default


def _norm_domain(value: str | None, default: str = "general") -> str:
    if not value:
        return default
    return _DOMAIN_ALIASES.get(str(value).strip().lower(), str(value).strip().lower())


def _norm_gender(value: str | None) -> str:
    v = (value or "").strip().upper()
    if v in ("F", "FEMALE", "W", "WOMAN"):
        return "F"
    if v in ("M", "MALE", "MAN"):
        return "M"
    return ""


def load_manifest(path: str | os.PathLike, split: str | Sequence[str] | None = None,
                  domains: Sequence[str] | None = None, full_band_only: bool = False) -> list[AudioItem]:
    """Read a manifest CSV. Relative paths are resolved against the CSV's folder.

    ``split`` / ``domains`` filter the rows (``split=None`` keeps all); ``full_band_only`` drops band-limited sources.
    """
    path = os.fspath(path)
    root = os.path.dirname(os.path.abspath(path))
    items = []
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if reader.fieldnames is None or "path" not in reader.fieldnames:
            raise ValueError(f"{path}: a manifest needs a 'path' column (has {reader.fieldnames})")
        for row in reader:
            p = (row.get("path") or "").strip()
            if not p:
                continue
            if not os.path.isabs(p):
                p = os.path.normpath(os.path.join(root, p))
            items.append(AudioItem(
                path=p,
                domain=_norm_domain(row.get("domain")),
                source=(row.get("source") or "").strip(),
                speaker=(row.get("speaker") or "").strip(),
                gender=_norm_gender(row.get("gender")),
                language=(row.get("language") or "").strip(),
                duration_s=_parse_float(row.get("duration_s")),
                sample_rate=_parse_int(row.get("sample_rate")),
                channels=_parse_int(row.get("channels")),
                full_band=_parse_bool(row.get("full_band"), True),
                split=(row.get("split") or "train").strip() or "train",
            ))
    return filter_items(items, split=split, domains=domains, full_band_only=full_band_only)


def write_manifest(items: Iterable[AudioItem], path: str | os.PathLike, relative: bool = True,
                   extra_columns: Sequence[str] = ()) -> None:
    """Write items as a manifest CSV (paths relative to the CSV's folder when ``relative``); atomic."""
    path = os.fspath(path)
    root = os.path.dirname(os.path.abspath(path))
    cols = list(MANIFEST_COLUMNS) + [c for c in extra_columns if c not in MANIFEST_COLUMNS]
    tmp = path + ".tmp"
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        for it in items:
            w.writerow(it.to_row(root if relative else None) if isinstance(it, AudioItem) else it)
    os.replace(tmp, path)


def scan_folder(folder: str | os.PathLike, domain: str | None = None, split: str = "train",
                probe: bool = False) -> list[AudioItem]:
    """All audio files under ``folder`` (sorted). The domain is ``domain`` when given, else the first path component
    (below ``folder``) naming a domain (``speech``/``music``/``general`` or aliases such as ``sfx``), else
    ``general``. The source is the first sub-folder name. With ``probe`` the header is read for duration/rate."""
    folder = os.path.abspath(os.fspath(folder))
    items = []
    for full in iter_audio_files(folder):
        parts = os.path.relpath(full, folder).split(os.sep)
        dom = domain
        if dom is None:
            for comp in parts[:-1]:
                if comp.lower() in _DOMAIN_ALIASES:
                    dom = _DOMAIN_ALIASES[comp.lower()]
                    break
        kw = {}
        if probe:
            try:
                info = sf.info(full)
                kw = dict(duration_s=info.frames / info.samplerate, sample_rate=info.samplerate,
                          channels=info.channels)
            except Exception:  # noqa: BLE001 - unreadable files are skipped
                continue
        items.append(AudioItem(path=full, domain=_norm_domain(dom), source=parts[0] if len(parts) > 1 else "",
                               split=split, **kw))
    return items


def load_items(source, split: str | Sequence[str] | None = None, domains: Sequence[str] | None = None,
               domain: str | None = None, full_band_only: bool = False) -> list[AudioItem]:
    """Items from a manifest CSV, a pack folder (holding ``pack_manifest.csv`` or ``manifest.csv``), a plain folder of
    audio, a list of such sources, or a list of :class:`AudioItem`. ``split`` applies to manifests only (a plain
    folder has no split: all its files are used)."""
    if isinstance(source, (list, tuple)):
        if all(isinstance(s, AudioItem) for s in source):
            return filter_items(list(source), split=split, domains=domains, full_band_only=full_band_only)
        out = []
        for s in source:
            out.extend(load_items(s, split=split, domains=domains, domain=domain, full_band_only=full_band_only))
        return out
    source = os.fspath(source)
    if os.path.isfile(source):
        items = load_manifest(source, split=split, domains=domains, full_band_only=full_band_only)
    elif os.path.isdir(source):
        for name in _PACK_MANIFESTS:
            if os.path.isfile(os.path.join(source, name)):
                return load_manifest(os.path.join(source, name), split=split, domains=domains,
                                     full_band_only=full_band_only)
        items = filter_items(scan_folder(source, domain=domain), domains=domains, full_band_only=full_band_only)
    else:
        raise FileNotFoundError(source)
    if domain is not None:
        items = [replace(it, domain=_norm_domain(domain)) for it in items]
    return items


def filter_items(items: Sequence[AudioItem], split=None, domains=None, full_band_only=False) -> list[AudioItem]:
    if isinstance(split, str):
        split = (split,)
    doms = None if domains is None else {_norm_domain(d) for d in domains}
    return [it for it in items
            if (split is None or it.split in split)
            and (doms is None or it.domain in doms)
            and (not full_band_only or it.full_band)]


def summarize_items(items: Sequence[AudioItem]) -> dict:
    """Minutes and file counts per (split, domain); durations must be known (NaN counts as 0)."""
    out: dict = {}
    for it in items:
        d = out.setdefault(it.split, {}).setdefault(it.domain, {"files": 0, "minutes": 0.0})
        d["files"] += 1
        if math.isfinite(it.duration_s):
            d["minutes"] += it.duration_s / 60.0
    return out


def require_items(source, split: str | Sequence[str] | None = None, domains: Sequence[str] | None = None,
                  what: str = "audio items") -> list[AudioItem]:
    """:func:`load_items` of ``source`` (anything it accepts, a list of items included), raising ``ValueError``
    naming ``what`` when nothing is left after the ``split`` / ``domains`` filter."""
    items = load_items(source, split=split, domains=domains)
    if not items:
        raise ValueError(f"no {what} after filtering (split={split!r}, domains={domains!r})")
    return items

