"""The run as one self-contained HTML file a radiologist opens in a browser (no server, no network).

An axial slice browser over the series as it is stored (rows down, columns across, slice 1 first,
as the montage and a PACS viewer show it): the scan with each prompt's mask outline, and on demand
the AOVA map and the pseudo-healthy image of one prompt side by side. Slider, arrow keys
(PageUp/PageDown: 10 slices, Home/End) and the mouse wheel step the slices. Below, the lesion
table (the SR's measurements, from :func:`.sr_writer.run_lesions`): a click on a lesion shows its
centroid's slice. Above, the research-use warning, the input, the prompts, the weights and the
package versions.

The page state is in the URL fragment, so a link (or a screenshot tool) can open it anywhere:
``#slice=12&aova=1&healthy=1&prompt=2`` (1-based slice and prompt numbers).

Everything is in the file: each slice is a base64 JPEG (grey, windowed as the montage), each
slice with a mask a transparent PNG of the outlines, each AOVA map a grey JPEG that the page
colours (inferno, over the scan, as in the montage; at half the resolution above 256 px: the map
is smooth), and the pseudo-healthy image only on the slices where it differs from the scan.
Slices wider than 512 px are reduced to fit. A Content-Security-Policy forbids the page any
network request.
"""

from __future__ import annotations

import base64
import datetime
import html
import io
import json
import math
import os
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from PIL import Image
from scipy import ndimage

from . import __version__
from .output_files import atomic_path
from .segmentation_run import SegmentationRun
from .sr_writer import run_lesions

__all__ = ["HTML_REPORT_FILE_NAME", "RESEARCH_WARNING", "build_html_report", "write_html_report"]

HTML_REPORT_FILE_NAME = "diffugts_report.html"
#: The app's wording (``app --help``, docs/app.md).
RESEARCH_WARNING = "Research use only: not a medical device, not for diagnosis."
#: Largest in-plane size embedded; larger slices are reduced by an integer factor (file size).
MAX_PIXELS = 512
#: AOVA panels above this size are embedded at half resolution.
AOVA_MAX_PIXELS = 256
#: JPEG qualities of the scan and of the (smooth) AOVA maps: a 512^2 x 256 CT with two prompts
#: makes a file of about 13 MB.
JPEG_QUALITY, MAP_JPEG_QUALITY = 80, 75
AOVA_FLOOR = 0.05  # as in the montage: below it the map is not drawn
#: Outline colour per prompt (segment 1 red, as in the montage).
PALETTE = ((255, 40, 40), (0, 200, 255), (255, 220, 0), (60, 230, 60), (255, 80, 255), (255, 150, 0))
_INFERNO = (colormaps["inferno"](np.linspace(0, 1, 256))[:, :3] * 255).astype(np.uint8)


def _data_url(image: Image.Image, fmt: str, quality: int = JPEG_QUALITY) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **({"quality": quality} if fmt == "JPEG" else {"optimize": True}))
    return f"data:image/{fmt.lower()};base64,{base64.b64encode(buffer.getvalue()).decode('ascii')}"


def _grey(image: np.ndarray, window: tuple[float, float], factor: int) -> str:
    """One slice as a grey JPEG in ``window``, reduced by ``factor``."""
    low, high = window
    grey = (np.clip((image - low) / (high - low), 0, 1) * 255).round().astype(np.uint8)
    return _data_url(_reduce(Image.fromarray(grey, "L"), factor), "JPEG")


def _reduce(image: Image.Image, factor: int) -> Image.Image:
    return image.reduce(factor) if factor > 1 else image  # box average: no aliasing


def _z_slices(xyz: np.ndarray, chunk: int = 16):
    """The slices of an ``(x, y, z)`` array in ``(row, column)`` order. A few slices are copied out
    (runs of ``chunk`` values) and then transposed, which reads memory in order where a
    whole-volume transpose does not (``python -m benchmarks.hot_paths`` times both)."""
    for start in range(0, xyz.shape[2], chunk):
        block = np.ascontiguousarray(np.asarray(xyz)[:, :, start : start + chunk])
        yield from np.ascontiguousarray(block.transpose(2, 1, 0))


def _outline_png(masks: list[np.ndarray], factor: int) -> str | None:
    """The inner boundary of each prompt's mask on one slice, in its colour, on transparency."""
    if not any(m.any() for m in masks):
        return None
    rgba = None
    for p, mask in enumerate(masks):
        # Reduced as the scan is; a block holding any lesion voxel is lesion (small lesions stay).
        mask = np.asarray(_reduce(Image.fromarray((mask > 0).astype(np.uint8) * 255, "L"), factor)) > 0
        if rgba is None:
            rgba = np.zeros((*mask.shape, 4), np.uint8)
        edge = mask & ~ndimage.binary_erosion(mask, border_value=0)
        rgba[edge] = (*PALETTE[p % len(PALETTE)], 255)
    assert rgba is not None  # masks is not empty: one of them holds a voxel
    return _data_url(Image.fromarray(rgba, "RGBA"), "PNG")


def _aova_jpeg(aova: np.ndarray, factor: int) -> str:
    """The AOVA map of one slice as a grey JPEG (0 below the floor); the page colours it. A smooth
    grey map is a few kB where the map blended into the scan would be as large as the scan."""
    level = (np.clip(aova, 0, 1) * 255).round().astype(np.uint8)
    level[aova < AOVA_FLOOR] = 0
    return _data_url(_reduce(Image.fromarray(level, "L"), factor), "JPEG", MAP_JPEG_QUALITY)


def _slice_of(run: SegmentationRun, ras_mm) -> int:
    """The stored slice (z of the ``(x, y, z)`` grid) holding a world point, clamped."""
    z = (np.linalg.inv(run.affine) @ np.append(np.asarray(ras_mm, float), 1.0))[2]
    return int(np.clip(round(float(z)), 0, run.volume.shape[0] - 1))


def _swatch(prompt: int) -> str:
    red, green, blue = PALETTE[prompt % len(PALETTE)]
    return f'<span class="swatch" style="background:#{red:02x}{green:02x}{blue:02x}"></span>'


def _fmt(value, digits: int) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def _lesion_rows(run: SegmentationRun) -> list[str]:
    """The lesion table's rows (HTML), every prompt's lesions, largest first."""
    unit = "HU" if run.modality.value == "CT" else ""
    rows = []
    for p, result in enumerate(run.results):
        segment = f"<td>{_swatch(p)}{p + 1}: {html.escape(result.prompt.prompt)}</td>"
        measured = run_lesions(run, p)
        if not measured:
            rows.append(f'<tr class="none">{segment}<td colspan="9">no lesion</td></tr>')
        for m in measured:
            k = _slice_of(run, m.centroid_ras_mm)
            centroid = ", ".join(f"{c:.1f}" for c in m.centroid_lps_mm)
            rows.append(
                f'<tr class="lesion" data-slice="{k + 1}" data-prompt="{p + 1}" tabindex="0">{segment}<td>{m.index}</td>'
                f"<td>{m.volume_ml:.2f}</td><td>{m.longest_axial_diameter_mm:.1f}</td><td>{centroid}</td><td>{k + 1}</td>"
                f"<td>{m.intensity_mean:.1f} &plusmn; {m.intensity_sd:.1f} {unit}</td><td>{html.escape(m.host_organ or '')}</td>"
                f"<td>{_fmt(m.aova_mean, 3)}</td><td>{_fmt(m.probability_mean, 3)}</td></tr>"
            )
    return rows


def _slice_images(run: SegmentationRun, window: tuple[float, float]) -> dict:
    """Every slice's images as data URLs (``None``: nothing to draw, or the same as the scan)."""
    slices, rows, columns = run.volume.shape
    factor = max(1, math.ceil(max(rows, columns) / MAX_PIXELS))
    aova_factor = factor * (2 if max(rows, columns) / factor > AOVA_MAX_PIXELS else 1)
    scan = [_grey(run.volume[k], window, factor) for k in range(slices)]
    masks = [_z_slices(r.mask) for r in run.results]
    outline = [_outline_png([next(m) for m in masks], factor) for _ in range(slices)]
    aova: list[list[str] | None] = []
    healthy: list[list[str | None] | None] = []
    for result in run.results:
        aova.append(None if result.aova_map is None else [_aova_jpeg(a, aova_factor) for a in _z_slices(result.aova_map)])
        if result.pseudo_healthy is None:
            healthy.append(None)
            continue
        # Elsewhere than in the inpainted region it is the scan: not embedded twice.
        healthy.append([_grey(image, window, factor) if np.any(image != run.volume[k]) else None for k, image in enumerate(_z_slices(result.pseudo_healthy))])
    return {"scan": scan, "outline": outline, "aova": aova, "healthy": healthy}


def _short_sha(value: str) -> str:
    """``autoencoder.pt sha256:<64 hex>`` -> ``autoencoder.pt sha256:<12 hex>`` (random-init as is)."""
    head, sep, digest = value.partition("sha256:")
    return f"{head}{sep}{digest[:12]}" if sep else value


def _header(run: SegmentationRun, versions: dict[str, str | None], created: str) -> str:
    first = run.source_datasets[0]
    spacing = np.linalg.norm(run.affine[:3, :3], axis=0)
    items = {
        "Study": str(run.study.StudyInstanceUID),
        "Series": f"{run.modality.value} {first.get('SeriesDescription', '')} ({run.series.SeriesInstanceUID})",
        "Selected by": run.selection_name,
        "Slices x rows x columns": " x ".join(str(n) for n in run.volume.shape) + f" ({spacing[2]:.2f} x {spacing[1]:.2f} x {spacing[0]:.2f} mm)",
        "Weights": f"profile {run.profile} ({run.weights_source}): " + "; ".join(f"{name}: {_short_sha(value)}" for name, value in sorted(run.weights.items())),
        "Knobs": ", ".join(f"{k} {v}" for k, v in sorted(run.pipeline_config.items())),
        "Versions": ", ".join(f"{k} {v}" for k, v in versions.items() if v),
        "Created": f"{created} by DiffuGTS-Deploy {__version__} (model step {run.seconds:.1f} s)",
    }
    prompts = "".join(f"<li>{_swatch(p)}{p + 1}: {html.escape(r.prompt.prompt)} ({r.tumor_volume_ml:.2f} mL)</li>" for p, r in enumerate(run.results))
    details = "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(v)}</dd>" for k, v in items.items())
    return f'<dl>{details}</dl><p>Prompts (outline colour, segment number in the SEG):</p><ul class="prompts">{prompts}</ul>'


_STYLE = """
[hidden]{display:none!important}
body{font:14px system-ui,sans-serif;margin:12px;background:#111;color:#ddd}
.warning{background:#7a0000;color:#fff;padding:6px 10px;font-weight:bold}
dl{display:grid;grid-template-columns:max-content auto;gap:2px 12px;font-size:12px}dt{color:#999}dd{margin:0}
.swatch{display:inline-block;width:10px;height:10px;margin-right:5px}.prompts{list-style:none;padding:0}
.controls{margin:8px 0}.controls label{margin-right:14px}#slider{width:420px;vertical-align:middle}
.views{display:flex;gap:8px}.panel{flex:1 1 0;max-width:512px}.panel p{margin:2px 0;font-size:12px;color:#aaa}
.view{position:relative;width:100%}.view img{display:block;width:100%;height:100%;position:absolute;top:0;left:0}
.view canvas{position:absolute;top:0;left:0;width:100%;height:100%}.view img.outline{image-rendering:pixelated}
table{border-collapse:collapse;margin-top:12px;font-size:13px}td,th{border:1px solid #444;padding:3px 7px;text-align:right}td{white-space:nowrap}
td:first-child{text-align:left}tr.lesion{cursor:pointer}tr.lesion:hover,tr.lesion.current{background:#2a3a5a}
"""

_SCRIPT = """
const D = JSON.parse(document.getElementById('report-data').textContent);
const n = D.scan.length, $ = id => document.getElementById(id);
const state = {slice: D.start, aova: false, healthy: false, prompt: 0};
function parseHash() {
  const h = new URLSearchParams(location.hash.slice(1));
  if (h.has('slice')) state.slice = (parseInt(h.get('slice'), 10) || 1) - 1;
  if (h.has('prompt')) state.prompt = Math.min(Math.max((parseInt(h.get('prompt'), 10) || 1) - 1, 0), D.prompts - 1);
  state.aova = h.get('aova') === '1' && D.aova[state.prompt] !== null;
  state.healthy = h.get('healthy') === '1' && D.healthy[state.prompt] !== null;
}
function show() {
  const k = state.slice = Math.min(Math.max(state.slice, 0), n - 1), p = state.prompt;
  for (const img of document.querySelectorAll('img.outline')) {
    img.src = D.outline[k] || D.blank; img.hidden = !$('outline').checked;
  }
  $('scan').src = D.scan[k];
  $('aova-panel').hidden = !state.aova; $('healthy-panel').hidden = !state.healthy;
  if (state.aova) { $('aova').src = D.scan[k]; paintAova(k, p); }
  if (state.healthy) $('healthy').src = D.healthy[p][k] || D.scan[k];
  $('slider').value = k + 1; $('slice-label').textContent = `slice ${k + 1} / ${n}`;
  $('show-aova').checked = state.aova; $('show-healthy').checked = state.healthy; $('prompt').value = p;
  for (const row of document.querySelectorAll('tr.lesion')) row.classList.toggle('current', +row.dataset.slice === k + 1);
  const hash = `#slice=${k + 1}&aova=${+state.aova}&healthy=${+state.healthy}&prompt=${p + 1}`;
  if (location.hash !== hash) history.replaceState(null, '', hash);
}
function paintAova(k, p) {  // the grey map in the inferno colours, transparent below the floor
  const img = new Image(), heat = $('aova-heat');
  img.onload = () => {
    if (state.slice !== k || state.prompt !== p) return;  // stepped on meanwhile
    heat.width = img.naturalWidth; heat.height = img.naturalHeight;
    const context = heat.getContext('2d');
    context.drawImage(img, 0, 0);
    const pixels = context.getImageData(0, 0, heat.width, heat.height), d = pixels.data;
    for (let i = 0; i < d.length; i += 4) {
      const v = d[i];
      d[i] = D.lut[3 * v]; d[i + 1] = D.lut[3 * v + 1]; d[i + 2] = D.lut[3 * v + 2]; d[i + 3] = v < D.floor ? 0 : 153;
    }
    context.putImageData(pixels, 0, 0);
    heat.dataset.slice = k + 1; heat.dataset.prompt = p + 1;
  };
  img.src = D.aova[p][k];
}
function step(by) { state.slice += by; show(); }
$('slider').max = n;
$('slider').addEventListener('input', e => { state.slice = e.target.value - 1; show(); });
$('outline').addEventListener('change', show);
$('show-aova').addEventListener('change', e => { state.aova = e.target.checked; show(); });
$('show-healthy').addEventListener('change', e => { state.healthy = e.target.checked; show(); });
$('prompt').addEventListener('change', e => { state.prompt = +e.target.value; show(); });
document.addEventListener('keydown', e => {
  const by = {ArrowUp: -1, ArrowLeft: -1, ArrowDown: 1, ArrowRight: 1, PageUp: -10, PageDown: 10, Home: -n, End: n}[e.key];
  if (by !== undefined && e.target.tagName !== 'SELECT') { e.preventDefault(); step(by); }
});
document.querySelector('.views').addEventListener('wheel', e => { e.preventDefault(); step(Math.sign(e.deltaY)); }, {passive: false});
for (const row of document.querySelectorAll('tr.lesion')) {
  const go = () => {
    state.slice = row.dataset.slice - 1; state.prompt = row.dataset.prompt - 1; show();
    document.querySelector('.views').scrollIntoView({block: 'nearest'});
  };
  row.addEventListener('click', go);
  row.addEventListener('keydown', e => { if (e.key === 'Enter') go(); });
}
window.addEventListener('hashchange', () => { parseHash(); show(); });
parseHash(); show();
"""

# A 1x1 transparent GIF: the outline of a slice without a mask.
_BLANK = "data:image/gif;base64,R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7"


def build_html_report(run: SegmentationRun, *, window: tuple[float, float], versions: dict[str, str | None], created: str | None = None) -> str:
    """The report of ``run`` as an HTML document (see the module docstring).

    Args:
        window: the grey-level window (``report_operator.display_window``).
        versions: package versions (``report_operator.package_versions``).
        created: the time stamp shown (default: now, UTC).
    """
    created = created or datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    images = _slice_images(run, window)
    rows = _lesion_rows(run)
    area = sum((np.asarray(r.mask).sum(axis=(0, 1)) for r in run.results), np.zeros(run.volume.shape[0]))
    start = int(np.argmax(area)) if area.any() else run.volume.shape[0] // 2  # the slice with the most lesion
    data = {
        **images,
        "blank": _BLANK,
        "start": start,
        "prompts": len(run.results),
        "lut": _INFERNO.ravel().tolist(),
        "floor": round(AOVA_FLOOR * 255),
    }
    # "<" escaped: a prompt holding "</script>" cannot end the data block.
    payload = json.dumps(data, separators=(",", ":")).replace("<", "\\u003c")
    slices, rows_px, columns_px = run.volume.shape
    spacing = np.linalg.norm(run.affine[:3, :3], axis=0)
    aspect = f"{columns_px * spacing[0]:.3f}/{rows_px * spacing[1]:.3f}"  # physical proportions
    untrained = f" UNTRAINED networks ({', '.join(run.untrained)}): the masks mean nothing." if run.untrained else ""
    options = "".join(f'<option value="{p}">{p + 1}: {html.escape(r.prompt.prompt)}</option>' for p, r in enumerate(run.results))
    no_aova = "" if any(a is not None for a in images["aova"]) else " disabled"
    no_healthy = "" if any(h is not None for h in images["healthy"]) else " disabled"

    def panel(name: str, title: str, hidden: bool, layer: str = "") -> str:
        return (
            f'<div class="panel" id="{name}-panel"{" hidden" if hidden else ""}><p>{title}</p>'
            f'<div class="view" style="aspect-ratio:{aspect}"><img id="{name}" alt="{title}">{layer}'
            f'<img class="outline" alt=""></div></div>'
        )

    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'">
<title>DiffuGTS report: {html.escape(run.modality.value)} series {html.escape(str(run.series.SeriesInstanceUID))}</title>
<style>{_STYLE}</style></head><body>
<p class="warning">{RESEARCH_WARNING}{html.escape(untrained)}</p>
<h1>DiffuGTS zero-shot tumor segmentation</h1>
{_header(run, versions, created)}
<div class="controls">
<input type="range" id="slider" min="1" value="{start + 1}" aria-label="slice"> <span id="slice-label"></span>
(arrow keys, mouse wheel)<br>
<label><input type="checkbox" id="outline" checked> mask outlines</label>
<label><input type="checkbox" id="show-aova"{no_aova}> AOVA map</label>
<label><input type="checkbox" id="show-healthy"{no_healthy}> pseudo-healthy image</label>
<label>of prompt <select id="prompt">{options}</select></label>
</div>
<div class="views">{panel("scan", "scan", False)}
{panel("aova", "AOVA (anomaly-aware attention) map", True, '<canvas id="aova-heat"></canvas>')}
{panel("healthy", "pseudo-healthy image", True)}</div>
<table id="lesions"><thead><tr><th>segment</th><th>lesion</th><th>volume (mL)</th><th>longest axial diameter (mm)</th>
<th>centroid LPS (mm)</th><th>slice</th><th>intensity mean &plusmn; SD</th><th>host organ</th><th>mean AOVA</th><th>mean probability</th></tr></thead>
<tbody>{"".join(rows)}</tbody></table>
<p>Click a lesion to show its centroid's slice. Slices as stored in the series ({slices}), rows down, columns across.</p>
<script type="application/json" id="report-data">{payload}</script>
<script>{_SCRIPT}</script>
</body></html>
"""


def write_html_report(run: SegmentationRun, path: str | os.PathLike, *, window: tuple[float, float], versions: dict[str, str | None]) -> Path:
    """Write :func:`build_html_report` of ``run`` to ``path`` (whole or not at all)."""
    path = Path(path)
    document = build_html_report(run, window=window, versions=versions)
    with atomic_path(path) as partial:
        partial.write_text(document, encoding="utf-8")
    return path
