#!/usr/bin/env python3
"""Fetch real speech / music / general sound from Debian packages and write ``data/manifest.csv``.

The packages (see ``../shared/data/AUDIO_SOURCES.md``) are fetched with ``apt-get download`` and unpacked with
``dpkg-deb -x`` into ``data/debs/<package>/`` -- nothing is installed. Every step is idempotent and resumable: a
``.deb`` already in ``data/debs_raw/`` is not fetched again, a package already unpacked (marker file) is not
unpacked again, and the manifest is rebuilt from what is on disk.

Manifest columns: path (relative to the manifest's folder), domain, source, speaker, gender, language, duration_s,
sample_rate, channels, full_band, split. The split (train/dev) is deterministic: whole speakers for labelled speech
(one speaker per (gender, band) class goes to dev), otherwise by a hash of the relative path (or of the drum kit /
speaker group), see ``ml_audio_encoder.training.data.splits.assign_splits``. Identical files (same bytes) are listed
once.

Examples::

    python train/get_data.py                               # everything (~1.3 GB of .deb, ~14 h of audio)
    python train/get_data.py --domains speech --max-minutes-per-source 5   # a quick subset
    python train/get_data.py --skip-download               # only rebuild the manifest from data/debs/
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import os
import re
import shutil
import subprocess
import sys
import zipfile
from concurrent.futures import ThreadPoolExecutor

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, REPO)

from ml_audio_encoder.training.data.manifest import (  # noqa: E402  (no Keras: TensorFlow never loads here)
    AudioItem,
    iter_audio_files,
    summarize_items,
    write_manifest,
)
from ml_audio_encoder.training.data.splits import assign_splits, stable_hash  # noqa: E402

# package -> domains it contributes (for --domains) and a one-line description
PACKAGES = {
    "tuxpaint-stamps-default": (("speech", "general"), "Tux Paint stamp descriptions (7+ voices) and stamp sounds"),
    "fillets-ng-data-cs": (("speech",), "Fish Fillets NG, Czech dialogue"),
    "fillets-ng-data-nl": (("speech",), "Fish Fillets NG, Dutch dialogue (band-limited ~7.7 kHz)"),
    "klettres-data": (("speech",), "KLettres letters and syllables, 20+ languages"),
    "ktuberling-data": (("speech",), "KTuberling single words, ~25 languages"),
    "asterisk-core-sounds-en-wav": (("speech",), "Asterisk prompts, en_US, 8 kHz"),
    "asterisk-core-sounds-es-wav": (("speech",), "Asterisk prompts, es_MX, 8 kHz"),
    "asterisk-core-sounds-fr-wav": (("speech",), "Asterisk prompts, fr_CA, 8 kHz"),
    "asterisk-core-sounds-it-wav": (("speech",), "Asterisk prompts, it_IT, 8 kHz"),
    "asterisk-core-sounds-ru-wav": (("speech",), "Asterisk prompts, ru_RU, 8 kHz"),
    "wesnoth-1.16-music": (("music",), "Battle for Wesnoth soundtrack (orchestral)"),
    "hedgewars-data": (("music", "speech", "general"), "Hedgewars music, voice packs, effects"),
    "nexuiz-music": (("music",), "Nexuiz soundtrack (electronic / rock), from music.pk3"),
    "colobot-common-sounds": (("music", "general"), "Colobot music and effects"),
    "freedroidrpg-data": (("music", "speech", "general"), "FreedroidRPG music and effects"),
    "sonic-pi-samples": (("music",), "Sonic Pi samples (lossless FLAC)"),
    "hydrogen-drumkits": (("music",), "Hydrogen drum kits (lossless one-shots)"),
    "bucklespring-data": (("general",), "Bucklespring keyboard sounds (lossless)"),
    "oxygen-sounds": (("general",), "KDE Oxygen desktop sounds"),
    "sound-theme-freedesktop": (("general",), "freedesktop sound theme"),
    "boswars-data": (("general", "speech"), "Bos Wars effects and tutorial narration"),
}
# warzone2100-music is deliberately absent: it is Opus-coded at ~48 kbps (would bias comparisons with Opus).

# Tux Paint descriptive-sound voices (package changelog credits). be/da are not in AUDIO_SOURCES.md: their genders
# follow the credited names (Kseniya Buraya, Joe Dalton) and were checked by pitch (see train/DATA.md).
TUXPAINT_VOICES = {
    "ro": "F", "es": "F", "ru": "M", "fr": "M", "bg": "M", "el": "F", "ca": "M", "be": "F", "da": "M",
}
TUXPAINT_BANDLIMITED = {"el", "ca"}  # el ~8 kHz, ca ~10 kHz bandwidth
FILLETS_ROLES = {"m": "F", "v": "M"}  # small fish (female voice), big fish (male voice)
BANDLIMITED_PACKAGES = {"fillets-ng-data-nl"} | {
    f"asterisk-core-sounds-{x}-wav" for x in ("en", "es", "fr", "it", "ru")
}
MIN_FULL_BAND_RATE = 22050  # files stored below this rate are band-limited by construction

DESC_RE = re.compile(r"_desc(?:_([A-Za-z]+))?\.ogg(?:\.ogg)?$")


def log(*a):
    print(*a, flush=True)


# ------------------------------------------------------------------------------------------------------------------
# download / unpack
# ------------------------------------------------------------------------------------------------------------------
def _deb_for(raw_dir: str, pkg: str):
    hits = sorted(glob.glob(os.path.join(raw_dir, f"{pkg}_*.deb")))
    return hits[-1] if hits else None


def download(pkgs, raw_dir: str, update: str = "auto") -> None:
    os.makedirs(raw_dir, exist_ok=True)
    missing = [p for p in pkgs if _deb_for(raw_dir, p) is None]
    if not missing:
        return
    updated = False
    if update == "always":
        subprocess.run(["apt-get", "update", "-q"], check=True)
        updated = True
    for p in missing:
        log(f"download {p}")
        r = subprocess.run(["apt-get", "download", p], cwd=raw_dir, capture_output=True, text=True)
        if r.returncode != 0 and not updated and update != "never":
            log("  apt-get download failed; running apt-get update once")
            subprocess.run(["apt-get", "update", "-q"], check=True)
            updated = True
            r = subprocess.run(["apt-get", "download", p], cwd=raw_dir, capture_output=True, text=True)
        if r.returncode != 0:
            raise SystemExit(f"apt-get download {p} failed:\n{r.stderr}")


def unpack(pkg: str, raw_dir: str, debs_dir: str) -> str:
    dest = os.path.join(debs_dir, pkg)
    marker = os.path.join(dest, ".unpacked")
    if os.path.exists(marker):
        return dest
    deb = _deb_for(raw_dir, pkg)
    if deb is None:
        raise SystemExit(f"no .deb for {pkg} in {raw_dir} (run without --skip-download)")
    log(f"unpack {os.path.basename(deb)}")
    tmp = dest + ".partial"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    subprocess.run(["dpkg-deb", "-x", deb, tmp], check=True)
    shutil.rmtree(dest, ignore_errors=True)
    os.replace(tmp, dest)
    with open(marker, "w") as fh:
        fh.write(os.path.basename(deb) + "\n")
    return dest


def extract_pk3(pkg_dir: str) -> None:
    """nexuiz-music ships its tracks inside a zip (.pk3): write the .ogg files to ``extracted/``."""
    out = os.path.join(pkg_dir, "extracted")
    for pk3 in sorted(glob.glob(os.path.join(pkg_dir, "**", "*.pk3"), recursive=True)):
        with zipfile.ZipFile(pk3) as z:
            for info in z.infolist():
                if info.is_dir() or not info.filename.lower().endswith(".ogg"):
                    continue
                target = os.path.join(out, info.filename.replace("/", os.sep))
                if os.path.exists(target) and os.path.getsize(target) == info.file_size:
                    continue
                os.makedirs(os.path.dirname(target), exist_ok=True)
                with z.open(info) as src, open(target + ".tmp", "wb") as dst:
                    shutil.copyfileobj(src, dst)
                os.replace(target + ".tmp", target)


# ------------------------------------------------------------------------------------------------------------------
# labelling rules: (package, path inside the package) -> labels, or None to skip
# ------------------------------------------------------------------------------------------------------------------
def classify(pkg: str, rel: str) -> dict | None:
    """``rel`` is the path below data/debs/<pkg>/ with '/' separators."""
    name = rel.rsplit("/", 1)[-1]
    stem = name.rsplit(".", 1)[0]
    lab = dict(domain=None, speaker="", gender="", language="", full_band=True, group="")
    if pkg == "tuxpaint-stamps-default":
        if not rel.startswith("usr/share/tuxpaint/stamps/") or not name.endswith(".ogg"):
            return None
        m = DESC_RE.search(name)
        if m:
            lang = (m.group(1) or "en").lower()
            lab.update(domain="speech", language=lang, speaker=f"tuxpaint_{lang}",
                       gender=TUXPAINT_VOICES.get(lang, ""), full_band=lang not in TUXPAINT_BANDLIMITED)
        elif "/symbols/math/" in rel or "/symbols/alphabets/" in rel:
            # spoken numbers and letters (Schoolsplay / British English credits); voices unlabelled
            sub = "math" if "/symbols/math/" in rel else rel.split("/symbols/alphabets/")[1].split("/")[0]
            lab.update(domain="speech", speaker=f"tuxpaint_symbols_{sub}",
                       language="de" if sub == "german" else "en")
        else:
            lab.update(domain="general")
        return lab
    if pkg.startswith("fillets-ng-data-"):
        lang = pkg.rsplit("-", 1)[-1]
        if f"/{lang}/" not in rel or not name.endswith(".ogg"):
            return None
        tok = stem.split("-")
        role = tok[1] if len(tok) > 1 and tok[1] in FILLETS_ROLES else tok[0] if tok[0] in FILLETS_ROLES else ""
        lab.update(domain="speech", language=lang, full_band=pkg not in BANDLIMITED_PACKAGES)
        if role:
            lab.update(speaker=f"fillets_{lang}_{role}", gender=FILLETS_ROLES[role])
        return lab
    if pkg == "klettres-data":
        parts = rel.split("/")
        if len(parts) < 5 or parts[:3] != ["usr", "share", "klettres"] or not name.endswith(".ogg"):
            return None
        lang = parts[3]
        lab.update(domain="speech", language=lang, speaker=f"klettres_{lang}")
        return lab
    if pkg == "ktuberling-data":
        parts = rel.split("/")
        if len(parts) < 6 or parts[:4] != ["usr", "share", "ktuberling", "sounds"]:
            return None
        lang = parts[4]
        lab.update(domain="speech", language=lang, speaker=f"ktuberling_{lang}")
        return lab
    if pkg.startswith("asterisk-core-sounds-"):
        parts = rel.split("/")
        if len(parts) < 6 or parts[:4] != ["usr", "share", "asterisk", "sounds"] or "/silence/" in rel:
            return None
        m = re.match(r"([a-z]{2}_[A-Z]{2})_([fm])_(.+)$", parts[4])
        if not m:
            return None
        # es_MX Allison and en_US Allison share a name: treated as one speaker (kept on one side of the split)
        lab.update(domain="speech", language=m.group(1), speaker=f"asterisk_{m.group(3)}",
                   gender=m.group(2).upper(), full_band=False)
        return lab
    if pkg == "wesnoth-1.16-music":
        return dict(lab, domain="music") if "/music/" in rel else None
    if pkg == "hedgewars-data":
        if "/Data/Music/" in rel:
            return dict(lab, domain="music")
        if "/Data/Sounds/voices/" in rel:
            pack = rel.split("/Data/Sounds/voices/")[1].split("/")[0]
            return dict(lab, domain="speech", speaker=f"hedgewars_{pack}")
        if "/Data/Sounds/" in rel:
            return dict(lab, domain="general")
        return None
    if pkg == "nexuiz-music":
        return dict(lab, domain="music") if rel.startswith("extracted/") else None
    if pkg == "colobot-common-sounds":
        if "/colobot/music/" in rel:
            return dict(lab, domain="music")
        if "/colobot/sounds/" in rel:
            return dict(lab, domain="general")
        return None
    if pkg == "freedroidrpg-data":
        if "/data/sound/music/" in rel:
            return dict(lab, domain="music")
        if "/tux_ingame_comments/" in rel:
            return dict(lab, domain="speech", speaker="freedroidrpg_tux")
        if "/data/sound/effects/" in rel:
            return dict(lab, domain="general")
        return None
    if pkg == "sonic-pi-samples":
        return dict(lab, domain="music") if "/sonic-pi/samples/" in rel else None
    if pkg == "hydrogen-drumkits":
        if "/drumkits/" not in rel:
            return None
        kit = rel.split("/drumkits/")[1].split("/")[0]
        return dict(lab, domain="music", group=f"hydrogen/{kit}")  # split by kit: one-shots of a kit are alike
    if pkg == "boswars-data":
        if "/campaigns/" in rel:
            return dict(lab, domain="speech", speaker="boswars_narrator")
        return dict(lab, domain="general")
    if pkg in ("bucklespring-data", "oxygen-sounds", "sound-theme-freedesktop"):
        return dict(lab, domain="general")
    return None


# ------------------------------------------------------------------------------------------------------------------
# scanning
# ------------------------------------------------------------------------------------------------------------------
def _probe(path: str):
    import soundfile as sf

    try:
        info = sf.info(path)
        if info.frames <= 0 or info.samplerate <= 0:
            return None
        h = hashlib.sha1()
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        return info.frames / info.samplerate, int(info.samplerate), int(info.channels), h.hexdigest()
    except Exception:  # noqa: BLE001 - e.g. Ogg Theora video, unsupported formats
        return None


def scan_package(pkg: str, data_dir: str, jobs: int) -> tuple[list[dict], int]:
    pkg_dir = os.path.join(data_dir, "debs", pkg)
    cands = []
    for full in iter_audio_files(pkg_dir):
        lab = classify(pkg, os.path.relpath(full, pkg_dir).replace(os.sep, "/"))
        if lab is not None:
            cands.append((full, lab))
    with ThreadPoolExecutor(jobs) as ex:
        probes = list(ex.map(lambda c: _probe(c[0]), cands))
    rows, bad = [], 0
    for (full, lab), pr in zip(cands, probes):
        if pr is None:
            bad += 1
            continue
        dur, sr, ch, digest = pr
        rel_data = os.path.relpath(full, data_dir).replace(os.sep, "/")
        full_band = bool(lab["full_band"]) and sr >= MIN_FULL_BAND_RATE
        rows.append(dict(path=rel_data, abspath=full, domain=lab["domain"], source=pkg, speaker=lab["speaker"],
                         gender=lab["gender"], language=lab["language"], duration_s=dur, sample_rate=sr,
                         channels=ch, full_band=full_band, group=lab["group"], sha1=digest))
    return rows, bad


def limit_minutes(rows: list[dict], max_minutes: float) -> list[dict]:
    """Keep, per source, files in hash order until ``max_minutes`` (deterministic, spreads over the source)."""
    out = []
    by_src: dict[str, list[dict]] = {}
    for r in rows:
        by_src.setdefault(r["source"], []).append(r)
    for rs in by_src.values():
        total = 0.0
        for r in sorted(rs, key=lambda r: stable_hash(r["path"], "limit")):
            if total >= max_minutes * 60:
                break
            out.append(r)
            total += r["duration_s"]
    return out


# ------------------------------------------------------------------------------------------------------------------
# licences
# ------------------------------------------------------------------------------------------------------------------
def read_copyright(pkg_dir: str, pkg: str) -> str:
    for cand in (f"usr/share/doc/{pkg}/copyright",):
        p = os.path.join(pkg_dir, cand)
        if os.path.exists(p):
            with open(p, encoding="utf-8", errors="replace") as fh:
                return fh.read()
    hits = glob.glob(os.path.join(pkg_dir, "usr/share/doc/*/copyright"))
    if hits:
        with open(hits[0], encoding="utf-8", errors="replace") as fh:
            return fh.read()
    return ""


# Copyright files that are free-form text (no DEP-5 ``License:`` fields), read by hand:
LICENCE_OVERRIDES = {
    "wesnoth-1.16-music": ["GPL-2+"],
    "fillets-ng-data-cs": ["GPL-2 (data)", "BSD-3-clause-like (packaging)"],
    "fillets-ng-data-nl": ["GPL-2 (data)", "BSD-3-clause-like (packaging)"],
    "nexuiz-music": ["GPL-2+"],
}


def licence_names(text: str) -> list[str]:
    """The short names of DEP-5 ``License:`` fields, in order of appearance (or a guess for free-form files)."""
    names = []
    for m in re.finditer(r"^License:[ \t]*(\S.*?)\s*$", text, flags=re.M):
        n = m.group(1).strip()
        if n and n not in names and not n.lower().startswith("copyright"):
            names.append(n)
    if not names:
        for pat, n in ((r"GNU General Public License", "GPL"), (r"Creative Commons", "Creative Commons"),
                       (r"public domain", "public domain"), (r"BSD", "BSD"), (r"MIT", "MIT")):
            if re.search(pat, text, flags=re.I):
                names.append(n + " (free-form copyright file)")
    return names


def deb_version(data_dir: str, pkg: str) -> str:
    marker = os.path.join(data_dir, "debs", pkg, ".unpacked")
    if os.path.exists(marker):
        with open(marker) as fh:
            name = fh.read().strip()
        parts = name[:-4].split("_")
        if len(parts) >= 2:
            return parts[1].replace("%3a", ":")
    return "?"


# ------------------------------------------------------------------------------------------------------------------
# reports
# ------------------------------------------------------------------------------------------------------------------
def minutes_table(rows: list[dict]) -> dict:
    tab: dict = {}
    for r in rows:
        d = tab.setdefault(r["domain"], {"train": 0.0, "dev": 0.0})
        d[r["split"]] += r["duration_s"] / 60.0
    return tab


def write_licenses(data_dir: str, out_dir: str, pkgs: list[str], lic: dict) -> None:
    path = os.path.join(out_dir, "LICENSES.md")
    with open(path + ".tmp", "w", encoding="utf-8") as fh:
        fh.write("# Licences of the audio under data/debs/\n\n"
                 "Written by train/get_data.py from each package's /usr/share/doc/<pkg>/copyright.\n\n")
        fh.write("| package | version | licence(s) |\n|---|---|---|\n")
        for p in pkgs:
            fh.write(f"| {p} | {deb_version(data_dir, p)} | {'; '.join(lic[p][0]) or '(see text)'} |\n")
        for p in pkgs:
            fh.write(f"\n## {p}\n\n```\n{lic[p][1].strip()}\n```\n")
    os.replace(path + ".tmp", path)


def write_data_md(path: str, rows: list[dict], pkgs: list[str], lic: dict, data_dir: str, args) -> None:
    tab = minutes_table(rows)
    per_src: dict = {}
    for r in rows:
        s = per_src.setdefault(r["source"], {"files": 0, "min": 0.0, "dev": 0.0, "domains": set()})
        s["files"] += 1
        s["min"] += r["duration_s"] / 60
        s["dev"] += r["duration_s"] / 60 if r["split"] == "dev" else 0.0
        s["domains"].add(r["domain"])
    spk: dict = {}
    for r in rows:
        if r["gender"]:
            k = (r["speaker"], r["gender"], r["split"], r["full_band"])
            spk[k] = spk.get(k, 0.0) + r["duration_s"] / 60
    lines = ["# Training data", "",
             "Built by `python train/get_data.py` (Debian bookworm packages fetched with `apt-get download` and "
             "unpacked with `dpkg-deb -x`; nothing installed). The audio itself lives under `data/` (git-ignored); "
             "`data/manifest.csv` lists every file, `data/LICENSES.md` holds the full copyright files.", "",
             f"Options of this build: domains={args.domains or 'all'}, "
             f"max-minutes-per-source={args.max_minutes_per_source or 'none'}, dev-fraction={args.dev_fraction}.",
             "", "## Minutes per domain and split", "",
             "| domain | train | dev | total |", "|---|---:|---:|---:|"]
    tt = td = 0.0
    for d in ("speech", "music", "general"):
        if d in tab:
            t, v = tab[d]["train"], tab[d]["dev"]
            tt, td = tt + t, td + v
            lines.append(f"| {d} | {t:.1f} | {v:.1f} | {t + v:.1f} |")
    lines.append(f"| **all** | {tt:.1f} | {td:.1f} | {tt + td:.1f} |")
    lines += ["", "## Sources", "",
              "| package | version | domains | files | minutes | of which dev | licence(s) (copyright file) |",
              "|---|---|---|---:|---:|---:|---|"]
    for p in pkgs:
        if p not in per_src:
            continue
        s = per_src[p]
        lines.append(f"| {p} | {deb_version(data_dir, p)} | {', '.join(sorted(s['domains']))} | {s['files']} | "
                     f"{s['min']:.1f} | {s['dev']:.1f} | {'; '.join(lic[p][0]) or 'see copyright'} |")
    lines += ["", "## Labelled speakers (gender) and their side of the split", "",
              "| speaker | gender | full band | split | minutes |", "|---|---|---|---|---:|"]
    for (s, g, sp, fb), m in sorted(spk.items(), key=lambda kv: (kv[0][2], kv[0][1], kv[0][0])):
        lines.append(f"| {s} | {g} | {'yes' if fb else 'no'} | {sp} | {m:.1f} |")
    lines += ["", "## Rules", "",
              "- Domains: spoken descriptions/dialogue/prompts/words are `speech`; game soundtracks, Sonic Pi samples "
              "and Hydrogen drum one-shots are `music`; effects, desktop and keyboard sounds are `general`. "
              "Tux Paint's spoken numbers and letters (`symbols/math`, `symbols/alphabets`) are speech.",
              "- Genders: Asterisk folder names (`*_f_*`, `*_m_*`); Tux Paint voices from the package changelog "
              "credits (ro, es, el, be: F; ru, fr, bg, ca, da: M); Fish Fillets `-m-` (small fish, F) and `-v-` "
              "(big fish, M). Other voices have an empty gender. be (Kseniya Buraya) and da (Joe Dalton) are not in "
              "`AUDIO_SOURCES.md`; their labels follow the credited names and a pitch check (median F0 of 6 random "
              "clips, librosa pyin: be 207 Hz, da 88 Hz; for comparison es 242, ro 240, ru 123, bg 115 Hz; "
              "Fillets cs -m- 266, -v- 143 Hz; nl -m- 206, -v- 130 Hz).",
              "- Speakers: as above, plus one pseudo-speaker per language for KLettres and KTuberling and one per "
              "Hedgewars voice pack (unknown gender, kept whole on one side). `en_US` and `es_MX` Asterisk prompts "
              "are both credited to Allison and are treated as one speaker.",
              "- `full_band` is false for Asterisk (8 kHz), Fish Fillets nl (~7.7 kHz), Tux Paint el (~8 kHz) and "
              "ca (~10 kHz), and for any file stored below 22.05 kHz.",
              "- Split: per (gender, full_band) class of labelled speakers (with >= 2 speakers), the speaker with the "
              "lowest SHA-1 among the smaller half of the class (by minutes) goes to dev; all other files go to dev "
              f"when SHA-1(group) < {args.dev_fraction} (group = speaker, Hydrogen "
              "kit, or the path relative to `data/`). Deterministic, no speaker on both sides.",
              "- Excluded: warzone2100-music (already Opus at ~48 kbps), Asterisk `silence/` files, unreadable files "
              "(e.g. Ogg Theora video), and byte-identical duplicates (the first path in sorted order is kept).",
              ""]
    text = "\n".join(lines)
    if os.path.exists(path):  # keep the section that train/make_pack.py maintains
        with open(path, encoding="utf-8") as fh:
            old = fh.read()
        m = re.search(r"<!-- pack -->.*?<!-- /pack -->\n?", old, flags=re.S)
        if m:
            text = text.rstrip("\n") + "\n\n" + m.group(0)
    with open(path + ".tmp", "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(path + ".tmp", path)


# ------------------------------------------------------------------------------------------------------------------
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default=os.path.join(REPO, "data"))
    ap.add_argument("--domains", nargs="+", choices=("speech", "music", "general"), default=None,
                    help="only these domains (and the packages that provide them)")
    ap.add_argument("--packages", nargs="+", default=None, help="only these packages")
    ap.add_argument("--max-minutes-per-source", type=float, default=None,
                    help="keep at most this many minutes per package (deterministic subset)")
    ap.add_argument("--dev-fraction", type=float, default=0.1)
    ap.add_argument("--skip-download", action="store_true", help="use only .deb files already in data/debs_raw")
    ap.add_argument("--apt-update", choices=("auto", "always", "never"), default="auto")
    ap.add_argument("--jobs", type=int, default=max(2, (os.cpu_count() or 2) * 2))
    ap.add_argument("--manifest", default=None, help="output CSV (default: DATA_DIR/manifest.csv)")
    ap.add_argument("--data-md", default=os.path.join(HERE, "DATA.md"),
                    help="summary to write (committed); '' to skip")
    args = ap.parse_args(argv)

    data_dir = os.path.abspath(args.data_dir)
    raw_dir = os.path.join(data_dir, "debs_raw")
    debs_dir = os.path.join(data_dir, "debs")
    os.makedirs(debs_dir, exist_ok=True)
    pkgs = list(PACKAGES)
    if args.packages:
        unknown = set(args.packages) - set(PACKAGES)
        if unknown:
            ap.error(f"unknown packages: {sorted(unknown)}")
        pkgs = [p for p in pkgs if p in args.packages]
    if args.domains:
        pkgs = [p for p in pkgs if set(PACKAGES[p][0]) & set(args.domains)]

    if not args.skip_download:
        download(pkgs, raw_dir, args.apt_update)
    lic = {}
    rows, nbad = [], 0
    for p in pkgs:
        pdir = unpack(p, raw_dir, debs_dir)
        if p == "nexuiz-music":
            extract_pk3(pdir)
        text = read_copyright(pdir, p)
        lic[p] = (LICENCE_OVERRIDES.get(p) or licence_names(text), text)
        r, bad = scan_package(p, data_dir, args.jobs)
        nbad += bad
        rows.extend(r)
        log(f"scan {p}: {len(r)} files, {sum(x['duration_s'] for x in r) / 60:.1f} min"
            + (f" ({bad} unreadable skipped)" if bad else ""))
    if args.domains:
        rows = [r for r in rows if r["domain"] in args.domains]
    # byte-identical duplicates: keep the first in sorted path order
    rows.sort(key=lambda r: r["path"])
    seen, uniq = set(), []
    for r in rows:
        if r["sha1"] in seen:
            continue
        seen.add(r["sha1"])
        uniq.append(r)
    log(f"{len(rows) - len(uniq)} duplicate files dropped, {nbad} unreadable skipped")
    rows = uniq
    # split on the full list (so that --max-minutes-per-source does not move files across sides)
    for r, s in zip(rows, assign_splits(rows, dev_fraction=args.dev_fraction)):
        r["split"] = s
    if args.max_minutes_per_source:
        rows = limit_minutes(rows, args.max_minutes_per_source)
        rows.sort(key=lambda r: r["path"])

    manifest = args.manifest or os.path.join(data_dir, "manifest.csv")
    items = [AudioItem(path=r["abspath"], domain=r["domain"], source=r["source"], speaker=r["speaker"],
                       gender=r["gender"], language=r["language"], duration_s=r["duration_s"],
                       sample_rate=r["sample_rate"], channels=r["channels"], full_band=r["full_band"],
                       split=r["split"]) for r in rows]
    write_manifest(items, manifest)
    write_licenses(data_dir, os.path.dirname(os.path.abspath(manifest)), pkgs, lic)
    if args.data_md:
        write_data_md(args.data_md, rows, pkgs, lic, data_dir, args)
    summ = summarize_items(items)
    log(f"wrote {manifest}: {len(items)} files")
    for sp in sorted(summ):
        log("  " + sp + ": " + ", ".join(f"{d} {v['minutes']:.1f} min ({v['files']} files)"
                                          for d, v in sorted(summ[sp].items())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
