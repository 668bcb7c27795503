"""Benchmark datasets: GTZAN, RAVDESS, any folder, or a manifest CSV (default: the dev split of data/manifest.csv).

Loaders only list files and their labels (`BenchItem`); decoding happens in the runner so an undecodable file is
skipped there with a warning and counted, never silently dropped here.
"""
from __future__ import annotations

import csv
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".opus", ".mp3", ".au", ".aiff", ".aif", ".m4a")

GTZAN_GENRES = ("blues", "classical", "country", "disco", "hiphop", "jazz", "metal", "pop", "reggae", "rock")

RAVDESS_EMOTIONS = {
    "01": "neutral", "02": "calm", "03": "happy", "04": "sad",
    "05": "angry", "06": "fearful", "07": "disgust", "08": "surprised",
}  # fmt: skip
_RAVDESS_NAME = re.compile(r"^(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)\.wav$", re.IGNORECASE)

# Where the default manifest lives, relative to the repository root (or the current directory).
DEFAULT_MANIFEST = os.path.join("data", "manifest.csv")
DEFAULT_SPLIT = "dev"


@dataclass
class BenchItem:
    path: str
    dataset: str  # "gtzan", "ravdess", "folder", "manifest"
    domain: str = ""  # speech | music | general ("" = unknown)
    label: str = ""  # genre, emotion, ...
    speaker: str = ""
    gender: str = ""
    meta: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        return os.path.basename(self.path)


def _sorted_files(root: Path, pattern: str) -> list[Path]:
    return sorted(p for p in root.glob(pattern) if p.is_file())


def load_gtzan(root: str | os.PathLike) -> list[BenchItem]:
    """GTZAN in either layout: `<root>/genres_original/<genre>/*.wav` (Kaggle) or `<root>/genres/<genre>/*.au`.

    `root` may also be the `genres_original` / `genres` folder itself.
    """
    root = Path(root)
    candidates = [root / "genres_original", root / "genres", root / "Data" / "genres_original", root]
    for base in candidates:
        files = _sorted_files(base, "*/*.wav") + _sorted_files(base, "*/*.au")
        files = [f for f in files if f.parent.name.lower() in GTZAN_GENRES]
        if files:
            return [BenchItem(str(f), "gtzan", "music", label=f.parent.name.lower()) for f in sorted(files)]
    raise FileNotFoundError(f"no GTZAN layout (genres_original/<genre>/*.wav or genres/<genre>/*.au) under {root}")


def parse_ravdess_name(filename: str) -> dict | None:
    """`03-01-06-01-02-01-12.wav` -> modality, vocal channel, emotion, intensity, statement, repetition, actor,
    gender (odd actors male, even female). None when the name is not a RAVDESS name."""
    m = _RAVDESS_NAME.match(os.path.basename(filename))
    if not m:
        return None
    modality, channel, emotion, intensity, statement, repetition, actor = m.groups()
    return {
        "modality": modality,
        "vocal_channel": "speech" if channel == "01" else "song",
        "emotion": RAVDESS_EMOTIONS.get(emotion, emotion),
        "intensity": "normal" if intensity == "01" else "strong",
        "statement": statement,
        "repetition": repetition,
        "actor": actor,
        "gender": "male" if int(actor) % 2 == 1 else "female",
    }


def load_ravdess(root: str | os.PathLike, include_song: bool = False) -> list[BenchItem]:
    """RAVDESS audio-only speech: `<root>/Actor_XX/03-01-*.wav` (song files `03-02-*` only with include_song)."""
    root = Path(root)
    files = _sorted_files(root, "Actor_*/03-*.wav") or _sorted_files(root, "*/Actor_*/03-*.wav")
    items = []
    for f in files:
        info = parse_ravdess_name(f.name)
        if info is None or (info["vocal_channel"] != "speech" and not include_song):
            continue
        items.append(
            BenchItem(str(f), "ravdess", "speech", label=info["emotion"], speaker=f"actor{info['actor']}",
                      gender=info["gender"], meta=info)
        )  # fmt: skip
    if not items:
        raise FileNotFoundError(f"no RAVDESS files (Actor_XX/03-01-*.wav) under {root}")
    return items


def load_folder(root: str | os.PathLike, domain: str = "", extensions=AUDIO_EXTENSIONS) -> list[BenchItem]:
    """Every audio file under `root`, recursively, sorted by path."""
    from ml_audio_encoder.runtime.audio_io import iter_audio_files

    root = Path(root)
    exts = tuple(e.lower() for e in extensions)
    files = sorted(Path(p) for p in iter_audio_files(root, exts))
    if not files:
        raise FileNotFoundError(f"no audio files ({', '.join(exts)}) under {root}")
    return [BenchItem(str(f), "folder", domain, label=f.parent.name) for f in files]


def load_manifest(
    path: str | os.PathLike, split: str | None = DEFAULT_SPLIT, domain: str | None = None
) -> list[BenchItem]:
    """Rows of a manifest CSV (columns path, domain, speaker, gender, split, ...), filtered by split and domain.

    Relative paths are resolved against the manifest's folder, then its parent (the repository root for
    data/manifest.csv), then the current directory.
    """
    path = Path(path)
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if rows and "path" not in rows[0]:
        raise ValueError(f"{path}: manifest has no 'path' column (columns: {list(rows[0])})")
    items = []
    for row in rows:
        if split and row.get("split", split) != split:
            continue
        if domain and row.get("domain", domain) != domain:
            continue
        p = row["path"]
        if not os.path.isabs(p):
            for base in (path.parent, path.parent.parent, Path.cwd()):
                if (base / p).exists():
                    p = str(base / p)
                    break
            else:
                p = str(path.parent.parent / p)
        meta = {k: v for k, v in row.items() if k not in ("path", "domain", "speaker", "gender")}
        items.append(
            BenchItem(p, "manifest", row.get("domain", "") or "", label=row.get("label", "") or row.get("source", ""),
                      speaker=row.get("speaker", "") or "", gender=row.get("gender", "") or "", meta=meta)
        )  # fmt: skip
    return items


def _repo_root() -> Path:
    return Path(__file__).resolve().parents[2]


def default_manifest() -> Path:
    """data/manifest.csv of the repository (or of the current directory)."""
    for base in (Path.cwd(), _repo_root()):
        p = base / DEFAULT_MANIFEST
        if p.exists():
            return p
    raise FileNotFoundError(
        f"no {DEFAULT_MANIFEST} (build it with train/get_data.py) — or pass --data DIR (GTZAN, RAVDESS or a folder)"
    )


def resolve_dataset(
    spec: str | os.PathLike | None, kind: str | None = None, limit: int | None = None
) -> list[BenchItem]:
    """Turn `--data` into items.

    - None, "default" or "dev": the dev split of data/manifest.csv, domain = kind (speech/music/general);
    - "manifest:PATH[:SPLIT]" or a `.csv` path: that manifest (split dev unless given), domain = kind;
    - "gtzan:DIR" / "ravdess:DIR" / "folder:DIR": that loader;
    - a directory: GTZAN if it has the GTZAN layout, RAVDESS if it has Actor_XX folders, else any audio under it;
    - a single audio file.
    `limit` keeps the first N items (sorted, so runs are reproducible).
    """
    spec = None if spec is None else str(spec)
    domain = kind if kind in ("speech", "music", "general") else None
    split = DEFAULT_SPLIT
    if spec in (None, "", "default", "dev"):
        items = load_manifest(default_manifest(), split=split, domain=domain)
    elif spec.startswith("manifest:"):
        rest = spec[len("manifest:") :]
        if rest.count(":") and not os.path.exists(rest):
            rest, split = rest.rsplit(":", 1)
        items = load_manifest(rest, split=split, domain=domain)
    elif spec.lower().endswith(".csv"):
        items = load_manifest(spec, split=split, domain=domain)
    elif spec.startswith(("gtzan:", "ravdess:", "folder:")):
        name, rest = spec.split(":", 1)
        items = {"gtzan": load_gtzan, "ravdess": load_ravdess}.get(name, lambda r: load_folder(r, domain or ""))(rest)
    elif os.path.isdir(spec):
        root = Path(spec)
        subdirs = {p.name.lower() for p in root.iterdir() if p.is_dir()}
        if subdirs & {"genres_original", "genres"} or len(subdirs & set(GTZAN_GENRES)) >= 2:
            try:
                items = load_gtzan(root)
            except FileNotFoundError:
                items = load_folder(root, domain or "")
        elif any(p.is_dir() and p.name.startswith("Actor_") for p in root.iterdir()):
            items = load_ravdess(root)
        else:
            items = load_folder(root, domain or "")
    elif os.path.isfile(spec):
        items = [BenchItem(spec, "file", domain or "")]
    else:
        raise FileNotFoundError(f"--data {spec!r}: not a directory, audio file, manifest or known name")
    if limit is not None and limit > 0:
        items = items[:limit]
    return items
