"""Benchmark output: per-file CSV, a Markdown summary in the thesis's format, and figures.

Files written by `write_report(result, out_dir)`:
  per_file.csv        one row per (file, codec, setting)
  summary.csv         means per (codec, setting)
  summary.md          the table (codec, bitrate, compression ratio, mel distance ↓, ViSQOL ↑, SI-SDR, RTF, peak MB)
  codebooks.md        per-level entropy / perplexity / utilization / dead codes of our codes (`analysis`)
  code_usage.png, perplexity.png
  quality_vs_kbps.png mel distance / ViSQOL / SI-SDR against achieved kbps, one line per codec
  spectrograms.png    original / ours / Opus at (about) the same bitrate, first file
"""
from __future__ import annotations

import csv
import json
import math
import os
from collections import OrderedDict

import numpy as np

# (key in the summary dict, column title) in table order
SUMMARY_COLUMNS = [
    ("codec", "Codec"),
    ("setting", "Setting"),
    ("kbps_file", "Bitrate (kbps)"),
    ("kbps_payload", "Payload (kbps)"),
    ("ratio_file", "Compression ratio"),
    ("ratio_payload", "Compression ratio (payload)"),
    ("kbps_file_packed", "Bit-packed (kbps)"),
    ("ratio_file_packed", "Bit-packed ratio"),
    ("mel_distance", "Mel distance ↓"),
    ("stft_distance", "STFT distance ↓"),
    ("visqol", "ViSQOL ↑"),
    ("si_sdr", "SI-SDR (dB) ↑"),
    ("enc_rtf", "RTF enc"),
    ("dec_rtf", "RTF dec"),
    ("peak_mb", "Peak MB"),
]
_MEAN_KEYS = ["kbps_file", "kbps_payload", "ratio_file", "ratio_payload", "kbps_file_packed", "ratio_file_packed",
              "kbps_payload_packed", "ratio_payload_packed", "mel_distance", "stft_distance", "visqol", "si_sdr",
              "enc_rtf", "dec_rtf", "target_kbps"]  # fmt: skip
_CODEC_ORDER = {"ours": 0, "opus": 1, "codec2": 2}


def write_csv(rows: list[dict], path: str) -> None:
    if not rows:
        with open(path, "w", newline="") as f:
            f.write("")
        return
    keys = list(OrderedDict.fromkeys(k for r in rows for k in r))
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        for r in rows:
            w.writerow({k: r.get(k, "") for k in keys})


def _nanmean(values) -> float:
    v = np.asarray([float(x) for x in values if x is not None and x != ""], dtype=np.float64)
    v = v[np.isfinite(v)]
    return float(v.mean()) if v.size else float("nan")


def _setting_key(row) -> tuple:
    return (_CODEC_ORDER.get(row["codec"], 9), row["codec"], float(row.get("target_kbps", 0) or 0), str(row["setting"]))


def summarize(rows: list[dict], memory: dict | None = None) -> list[dict]:
    """Mean of every metric per (codec, setting), ordered ours, opus, codec2 and by bitrate; `peak_mb` per codec."""
    groups: dict = OrderedDict()
    for r in sorted(rows, key=_setting_key):
        groups.setdefault((r["codec"], str(r["setting"])), []).append(r)
    memory = memory or {}
    out = []
    for (codec, setting), rs in groups.items():
        s = {"codec": codec, "setting": setting, "n_files": len(rs)}
        for k in _MEAN_KEYS:
            s[k] = _nanmean(r.get(k) for r in rs)
        modes = sorted({r.get("visqol_mode", "") for r in rs if r.get("visqol_mode")})
        s["visqol_mode"] = ", ".join(modes)
        s["peak_mb"] = float(memory.get(codec, {}).get("peak_rss_mb", float("nan")))
        out.append(s)
    return out


def _fmt(key: str, v) -> str:
    if isinstance(v, str):
        return v
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    if key.startswith("ratio"):
        return f"{v:.0f}" if v >= 100 else f"{v:.1f}"
    if key in ("mel_distance", "stft_distance"):
        return f"{v:.3f}"
    if key == "visqol":
        return f"{v:.2f}"
    if key.endswith("rtf"):
        return f"{v:.3f}"
    if key == "peak_mb":
        return f"{v:.0f}"
    return f"{v:.1f}" if abs(v) >= 1 or v == 0 else f"{v:.2f}"


def markdown_table(summary: list[dict]) -> str:
    head = "| " + " | ".join(t for _, t in SUMMARY_COLUMNS) + " |"
    sep = "|" + "|".join("---" if k in ("codec", "setting") else "---:" for k, _ in SUMMARY_COLUMNS) + "|"
    lines = [head, sep]
    for s in summary:
        lines.append("| " + " | ".join(_fmt(k, s.get(k)) for k, _ in SUMMARY_COLUMNS) + " |")
    return "\n".join(lines) + "\n"


def markdown_summary(result, summary: list[dict] | None = None, title: str | None = None) -> str:
    """The full Markdown report: context, the table, skipped files, memory notes."""
    summary = summary if summary is not None else summarize(result.rows, result.memory)
    cfg = result.config
    mi = result.model_info
    durations = {r["file"]: r["duration_s"] for r in result.rows}
    total_s = sum(durations.values())
    lines = [f"# {title or 'Benchmark'}: {cfg.kind}", ""]
    lines.append(
        f"Model `{mi.get('preset')}` ({mi.get('sample_rate')} Hz, hop {mi.get('hop_length')}, "
        f"{mi.get('n_codebooks')}×{mi.get('codebook_size')} codebooks, "
        + (f"{mi['params']:,} parameters, " if mi.get("params") else "")  # a LiteRT runtime does not count them
        + f"weights {mi.get('fingerprint') or '?'}). "
        f"{result.n_files} files, {total_s / 60:.1f} min of audio"
        + (f" (each cropped to {cfg.seconds:g} s)" if cfg.seconds else "")
        + f"; skipped (undecodable): {len(result.skipped)}."
    )
    lines.append("")
    lines.append(
        "Compression ratio = 16-bit mono PCM at the file's own rate ÷ compressed bytes: *whole file* (`.mlae` with "
        "header and CRC; Ogg/Opus with pages and headers) and *payload* (codes only; Opus packets only). "
        "Ours are the files as written: codes range-coded with the model's entropy priors when they ship "
        "(`mlae compress` default), bit-packed otherwise; *bit-packed* columns give the same files without entropy "
        "coding (`--entropy none`). "
        "Mel distance: DAC's 7-scale log-mel L1 at the file's rate (lower is better). "
        "RTF = processing seconds ÷ audio seconds (CPU; < 1 is faster than real time)."
    )
    lines.append("")
    if result.visqol_mode:
        lines.append(f"ViSQOL mode: **{result.visqol_mode}** (visqol-python 3.8.0).")
    else:
        lines.append("ViSQOL: not computed.")
    lines.append("")
    lines.append(markdown_table(summary))
    mem = result.memory or {}
    if mem:
        lines.append("Peak MB: peak resident memory of compressing one "
                     f"{cfg.memory_seconds / 60:g}-minute file in a fresh child process.")  # fmt: skip
        o = mem.get("ours", {})
        if "peak_rss_mb" in o:
            lines.append(
                f"Ours: {o['peak_rss_mb']:.0f} MB peak (of which {o.get('baseline_mb', float('nan')):.0f} MB is "
                f"Python + Keras/TensorFlow + weights before compressing), {o['seconds']:.1f} s (RTF {o['rtf']:.3f})."
            )
        elif "error" in o:
            lines.append(f"Ours: memory probe failed ({o['error'][:200]}).")
        p = mem.get("opus", {})
        if "peak_rss_mb" in p:
            lines.append(f"Opus (ffmpeg/libopus process): {p['peak_rss_mb']:.0f} MB peak, {p['seconds']:.1f} s "
                         f"(RTF {p['rtf']:.3f}).")  # fmt: skip
        lines.append("")
    cb = getattr(result, "codebook", None)
    if cb is not None:
        lines.append(
            f"Codebooks (ours, all {cb.n_q} levels, {cb.n_frames} frames): bitrate efficiency "
            f"{100 * cb.efficiency:.1f}% (sum of level entropies ÷ bits spent); mean perplexity "
            f"{float(np.mean(cb.perplexity)):.0f} of {cb.codebook_size}; dead codes {int(cb.dead_codes.sum())}. "
            "Per level: codebooks.md."
        )
        lines.append("")
    if result.skipped:
        lines.append(f"Skipped files ({len(result.skipped)}):")
        for path, why in result.skipped[:50]:
            lines.append(f"- `{path}`: {why}")
        if len(result.skipped) > 50:
            lines.append(f"- … and {len(result.skipped) - 50} more (see skipped.csv)")
        lines.append("")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------------------------
# figures
# ------------------------------------------------------------------------------------------------------------------
def _plt():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def plot_quality_vs_kbps(summary: list[dict], path: str | None = None, kbps_key: str = "kbps_payload"):
    """Mel distance, ViSQOL and SI-SDR against achieved kbps; one line per codec."""
    plt = _plt()
    metrics_ = [("mel_distance", "mel distance ↓"), ("visqol", "ViSQOL ↑"), ("si_sdr", "SI-SDR (dB) ↑")]
    have = [m for m in metrics_ if any(math.isfinite(s.get(m[0], float("nan"))) for s in summary)]
    fig, axes = plt.subplots(1, len(have), figsize=(4.2 * len(have), 3.4), squeeze=False)
    codecs = list(OrderedDict.fromkeys(s["codec"] for s in summary))
    for ax, (key, label) in zip(axes[0], have):
        for c in codecs:
            pts = sorted((s[kbps_key], s[key]) for s in summary if s["codec"] == c and math.isfinite(s[key]))
            if pts:
                ax.plot(*zip(*pts), "o-", label=c)
        ax.set_xlabel(f"{'payload' if 'payload' in kbps_key else 'file'} kbps")
        ax.set_ylabel(label)
        ax.set_xscale("log")
        from matplotlib.ticker import FormatStrFormatter

        ax.xaxis.set_major_formatter(FormatStrFormatter("%g"))
        ax.xaxis.set_minor_formatter(FormatStrFormatter("%g"))
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    fig.tight_layout()
    if path:
        fig.savefig(path, dpi=120, bbox_inches="tight")
    return fig


def log_spectrogram(x: np.ndarray, n_fft: int = 1024, hop: int = 256) -> np.ndarray:
    from scipy.signal import stft

    _, _, z = stft(x, nperseg=n_fft, noverlap=n_fft - hop, boundary=None)
    return 20.0 * np.log10(np.abs(z) + 1e-6)


def plot_spectrograms(signals: OrderedDict[str, tuple[np.ndarray, int]], path: str | None = None,
                      max_seconds: float = 10.0):  # fmt: skip
    """One panel per labelled signal (e.g. original / ours / Opus), shared colour scale."""
    plt = _plt()
    n = len(signals)
    fig, axes = plt.subplots(n, 1, figsize=(9, 2.3 * n), squeeze=False, sharex=True)
    specs = []
    for label, (x, sr) in signals.items():
        x = np.asarray(x, dtype=np.float32)[: int(max_seconds * sr)]
        specs.append((label, log_spectrogram(x), sr, len(x)))
    vmax = max(s.max() for _, s, _, _ in specs)
    for ax, (label, s, sr, n_samples) in zip(axes[:, 0], specs):
        im = ax.imshow(s, origin="lower", aspect="auto", vmin=vmax - 90, vmax=vmax, cmap="magma",
                       extent=(0, n_samples / sr, 0, sr / 2000.0))  # fmt: skip
        ax.set_ylabel("kHz")
        ax.set_title(label, fontsize=9)
    axes[-1, 0].set_xlabel("seconds")
    fig.colorbar(im, ax=axes[:, 0].tolist(), label="dB", shrink=0.8)
    if path:
        fig.savefig(path, dpi=110, bbox_inches="tight")
    return fig


def matched_pair(rows: list[dict], opus_kbps: float | None = None) -> tuple[dict, dict] | None:
    """(ours row, opus row) of one file at the closest achieved payload bitrates."""
    ours = [r for r in rows if r["codec"] == "ours"]
    opus = [r for r in rows if r["codec"] == "opus"]
    if not ours or not opus:
        return None
    if opus_kbps is not None:
        opus = sorted(opus, key=lambda r: abs(r["target_kbps"] - opus_kbps))[:1]
    best = min(((a, b) for a in ours for b in opus), key=lambda p: abs(p[0]["kbps_payload"] - p[1]["kbps_payload"]))
    return best


def write_report(result, out_dir: str, title: str | None = None, figures: bool = True) -> dict:
    """Write every output file; returns {name: path}."""
    os.makedirs(out_dir, exist_ok=True)
    paths = {}
    summary = summarize(result.rows, result.memory)
    paths["per_file"] = os.path.join(out_dir, "per_file.csv")
    write_csv(result.rows, paths["per_file"])
    paths["summary_csv"] = os.path.join(out_dir, "summary.csv")
    write_csv(summary, paths["summary_csv"])
    paths["summary_md"] = os.path.join(out_dir, "summary.md")
    with open(paths["summary_md"], "w") as f:
        f.write(markdown_summary(result, summary, title))
    if result.skipped:
        paths["skipped"] = os.path.join(out_dir, "skipped.csv")
        write_csv([{"path": p, "reason": r} for p, r in result.skipped], paths["skipped"])
    paths["run"] = os.path.join(out_dir, "run.json")
    with open(paths["run"], "w") as f:
        json.dump({"config": result.config_dict(), "model": result.model_info, "memory": result.memory,
                   "n_files": result.n_files, "n_skipped": len(result.skipped),
                   "visqol_mode": result.visqol_mode}, f, indent=2, default=str)  # fmt: skip
    cb = getattr(result, "codebook", None)
    if cb is not None:
        paths["codebooks"] = os.path.join(out_dir, "codebooks.md")
        with open(paths["codebooks"], "w") as f:
            f.write("# Codebook statistics (ours)\n\n" + cb.to_markdown())
    if figures and cb is not None:
        from ml_audio_encoder.eval import analysis

        plt = _plt()
        paths["code_usage"] = os.path.join(out_dir, "code_usage.png")
        plt.close(analysis.plot_code_usage(cb, paths["code_usage"]))
        paths["perplexity"] = os.path.join(out_dir, "perplexity.png")
        plt.close(analysis.plot_perplexity(cb, paths["perplexity"]))
    if figures and summary:
        plt = _plt()
        paths["quality_plot"] = os.path.join(out_dir, "quality_vs_kbps.png")
        plt.close(plot_quality_vs_kbps(summary, paths["quality_plot"]))
        ex = result.examples or {}
        pair = matched_pair(ex.get("_rows", []), result.config.spectrogram_kbps)
        if "original" in ex and pair is not None:
            a, b = pair
            sig = OrderedDict()
            sig["original"] = ex["original"]
            sig[f"ours, {a['setting']} levels ({a['kbps_payload']:.1f} kbps)"] = ex[f"ours:{a['setting']}"]
            sig[f"Opus {b['setting']} ({b['kbps_payload']:.1f} kbps payload)"] = ex[f"opus:{b['setting']}"]
            paths["spectrograms"] = os.path.join(out_dir, "spectrograms.png")
            plt.close(plot_spectrograms(sig, paths["spectrograms"]))
    return paths
