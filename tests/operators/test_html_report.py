"""The HTML report: self-contained, one image per slice, the lesion table of the measurements, and
(in Debian's headless Chromium) a page that shows the slice, its outline and the table, and steps.

The run is built by hand on the phantom CT series' grid (no network is run): prompt 1 holds a cube
of 5 voxels (1 mL at 2 mm) and a ball, prompt 2 nothing; prompt 1's pseudo-healthy image differs
from the scan inside the cube only.
"""

import json
import re
import shutil
import subprocess
from html.parser import HTMLParser

import numpy as np
import pytest
from operator_helpers import loaded_series
from PIL import Image

from operators import SegmentationRun
from operators.html_report import HTML_REPORT_FILE_NAME, RESEARCH_WARNING, build_html_report, write_html_report
from operators.report_operator import display_window, package_versions
from operators.sr_writer import run_lesions
from operators.volume_geometry import slices_to_xyz
from scripts import Modality, SegmentationResult
from scripts.text import PromptSet

CHROMIUM = "/usr/bin/chromium"
CUBE = (slice(5, 10), slice(6, 11), slice(10, 15))  # (x, y, z): slices 11 to 15 (1-based)
BALL_CENTRE, BALL_RADIUS = (28, 26, 6), 3


@pytest.fixture(scope="module")
def run(fragment, phantom_ct):
    selection, datasets, volume, affine = loaded_series(fragment, phantom_ct.folder)
    xyz = slices_to_xyz(volume)
    mask = np.zeros(xyz.shape, np.uint8)
    mask[CUBE] = 1
    grid = np.indices(xyz.shape).transpose(1, 2, 3, 0)
    mask[np.linalg.norm(grid - np.asarray(BALL_CENTRE), axis=-1) <= BALL_RADIUS] = 1
    healthy = xyz.copy()
    healthy[CUBE] = 40.0
    rng = np.random.default_rng(0)
    results = [
        SegmentationResult(
            prompt=PromptSet(prompt="liver tumor", finding="liver tumor", organ="liver", abnormal=(), normal=()),
            mask=mask,
            probability=rng.random(xyz.shape).astype(np.float32),
            aova_map=rng.random(xyz.shape).astype(np.float32),
            pseudo_healthy=healthy,
            tumor_volume_ml=float(mask.sum()) * 8 / 1000,
        ),
        SegmentationResult(
            prompt=PromptSet(prompt="bright <b>round</b> blob", finding=None, organ=None, abnormal=(), normal=()),
            mask=np.zeros(xyz.shape, np.uint8),
            probability=np.zeros(xyz.shape, np.float32),
            aova_map=np.zeros(xyz.shape, np.float32),
            pseudo_healthy=xyz.copy(),
            tumor_volume_ml=0.0,
        ),
    ]
    return SegmentationRun(
        study_selected_series=selection,
        source_datasets=datasets,
        modality=Modality.CT,
        volume=volume,
        affine=affine,
        results=results,
        profile="mini",
        weights={"autoencoder": "autoencoder.pt sha256:" + "ab" * 32},
        weights_source="embedded default",
        pipeline_config={"num_steps": 1, "seed": 0},
        seconds=1.5,
    )


@pytest.fixture(scope="module")
def report(run, tmp_path_factory):
    path = tmp_path_factory.mktemp("html") / HTML_REPORT_FILE_NAME
    write_html_report(run, path, window=display_window(run.volume, "CT"), versions=package_versions())
    return path


def _data(document: str) -> dict:
    return json.loads(re.search(r'<script type="application/json" id="report-data">(.*?)</script>', document, re.S).group(1))


class _Rows(HTMLParser):
    """The rows of the lesion table: (attributes, cell texts)."""

    def __init__(self):
        super().__init__()
        self.rows, self.cell = [], None

    def handle_starttag(self, tag, attrs):
        if tag == "tr":
            self.rows.append((dict(attrs), []))
        elif tag == "td":
            self.cell = ""

    def handle_endtag(self, tag):
        if tag == "td":
            self.rows[-1][1].append(self.cell.strip())
            self.cell = None

    def handle_data(self, data):
        if self.cell is not None:
            self.cell += data


def _lesion_rows(document: str) -> list:
    parser = _Rows()
    parser.feed(document[document.index('<table id="lesions">') : document.index("</table>")])
    return [row for row in parser.rows if "lesion" in row[0].get("class", "").split()]


def test_the_report_is_self_contained(report):
    document = report.read_text(encoding="utf-8")
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:|//)""", document, re.I)
    assert not re.search(r"url\(|@import|https?://", document, re.I)  # no style or text reference either
    assert "default-src 'none'" in document  # and the browser is told to fetch nothing
    assert RESEARCH_WARNING in document
    assert "&lt;b&gt;round&lt;/b&gt;" in document and "<b>round" not in document  # prompts are text, not markup


def test_one_image_per_slice_and_the_pseudo_healthy_only_where_it_differs(run, report):
    data = _data(report.read_text(encoding="utf-8"))
    slices = run.volume.shape[0]
    assert len(data["scan"]) == len(data["outline"]) == slices
    assert all(url.startswith("data:image/jpeg;base64,") for url in data["scan"])
    with_mask = {k for k in range(slices) if run.mask_slices(0)[k].any()}
    assert {k for k, url in enumerate(data["outline"]) if url} == with_mask
    assert all(url.startswith("data:image/png;base64,") for url in data["outline"] if url)
    assert len(data["aova"][0]) == slices and all(url.startswith("data:image/jpeg;base64,") for url in data["aova"][0])
    assert {k for k, url in enumerate(data["healthy"][0]) if url} == set(range(10, 15))  # the cube's slices
    assert not any(data["healthy"][1])  # the same as the scan: not embedded twice
    assert data["start"] in with_mask


def test_the_lesion_table_is_the_measurements(run, report):
    rows = _lesion_rows(report.read_text(encoding="utf-8"))
    measured = run_lesions(run, 0)
    assert len(rows) == len(measured) == 2  # the cube and the ball; prompt 2 has a "no lesion" row
    cube = measured[0] if measured[0].volume_ml == pytest.approx(1.0) else measured[1]
    assert cube.volume_ml == pytest.approx(125 * 8 / 1000)  # 5^3 voxels of 2 mm
    for (attributes, cells), lesion in zip(rows, measured):
        assert attributes["data-prompt"] == "1"
        assert cells[1] == str(lesion.index)
        assert float(cells[2]) == pytest.approx(lesion.volume_ml, abs=0.005)
        assert float(cells[3]) == pytest.approx(lesion.longest_axial_diameter_mm, abs=0.05)
        assert [float(c) for c in cells[4].split(",")] == pytest.approx(lesion.centroid_lps_mm, abs=0.05)
        assert cells[7] == "liver"
        assert float(cells[8]) == pytest.approx(lesion.aova_mean, abs=5e-4)
        assert float(cells[9]) == pytest.approx(lesion.probability_mean, abs=5e-4)
    slices = sorted(int(a["data-slice"]) for a, _ in rows)
    assert slices == [BALL_CENTRE[2] + 1, 13]  # the centroid's slice, 1-based (the cube spans 11 to 15)


def test_a_run_without_maps_disables_their_buttons(run):
    bare = SegmentationRun(**{**run.__dict__, "results": [SegmentationResult(**{**r.__dict__, "aova_map": None, "pseudo_healthy": None}) for r in run.results]})
    document = build_html_report(bare, window=(-160, 240), versions={})
    assert 'id="show-aova" disabled' in document and 'id="show-healthy" disabled' in document
    assert _data(document)["aova"] == [None, None]


# -- in a real browser -------------------------------------------------------------------------


def _chromium(tmp_path, url, *arguments):
    if not shutil.which(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is missing: install Debian's chromium (tools/apt-packages.txt) to render the report")
    command = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
        "--window-size=1200,900",
        "--virtual-time-budget=3000",
        *arguments,
        url,
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=180, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def _shown(dom: str) -> dict:
    """The src of each <img> with an id, and the outline images' src, in a dumped DOM."""
    images = {}
    for tag in re.findall(r"<img\b[^>]*>", dom):
        ident = re.search(r'\bid="([^"]+)"', tag)
        src = re.search(r'\bsrc="([^"]*)"', tag)
        key = ident.group(1) if ident else "outline"
        images.setdefault(key, []).append(src.group(1) if src else None)
    return images


@pytest.mark.slow
def test_chromium_shows_the_slice_the_outline_and_the_table_and_steps(run, report, tmp_path):
    data = _data(report.read_text(encoding="utf-8"))
    url = report.as_uri()
    on_cube = _shown(_chromium(tmp_path, f"{url}#slice=13", "--dump-dom"))
    on_ball = _shown(_chromium(tmp_path, f"{url}#slice={BALL_CENTRE[2] + 1}", "--dump-dom"))
    assert on_cube["scan"] == [data["scan"][12]] and on_ball["scan"] == [data["scan"][BALL_CENTRE[2]]]
    assert on_cube["scan"] != on_ball["scan"]  # stepping slices changes the image
    assert on_cube["outline"][0] == data["outline"][12] and on_cube["outline"][0].startswith("data:image/png")

    dom = _chromium(tmp_path, f"{url}#slice=13&aova=1&healthy=1", "--dump-dom")
    shown = _shown(dom)
    assert shown["aova"] == [data["scan"][12]] and shown["healthy"] == [data["healthy"][0][12]]
    assert re.search(r'<canvas id="aova-heat"[^>]*data-slice="13"', dom)  # the map was coloured in
    assert 'id="aova-panel" hidden' not in dom and "slice 13 / 24" in dom
    assert len(_lesion_rows(dom)) == 2

    # A click on the ball's row, then the Down arrow: a copy of the page does both when loaded.
    ball = next(a for a, _ in _lesion_rows(dom) if a["data-slice"] != "13")
    acted = tmp_path / "acted.html"
    acted.write_text(
        report.read_text(encoding="utf-8").replace(
            "</body>",
            """<script>
document.querySelector('tr.lesion[data-slice="SLICE"]').click();
document.dispatchEvent(new KeyboardEvent('keydown', {key: 'ArrowDown'}));
</script></body>""".replace("SLICE", ball["data-slice"]),
        ),
        encoding="utf-8",
    )
    dom = _chromium(tmp_path, f"{acted.as_uri()}#slice=13", "--dump-dom")
    assert _shown(dom)["scan"] == [data["scan"][int(ball["data-slice"])]]  # the ball's slice, then the next
    assert f"slice {int(ball['data-slice']) + 1} / 24" in dom

    screenshot = tmp_path / "report.png"
    _chromium(tmp_path, f"{url}#slice=13&aova=1&healthy=1", f"--screenshot={screenshot}")
    with Image.open(screenshot) as image:
        pixels = np.asarray(image.convert("RGB"), dtype=np.float32)
    assert pixels.shape[:2] == (900, 1200) and pixels.std() > 10
    # The outline's red (segment 1) is on the page: the overlay was drawn, not just loaded.
    red = (pixels[..., 0] > 200) & (pixels[..., 1] < 80) & (pixels[..., 2] < 80)
    assert red.sum() > 20
    # The three panels side by side (left, middle, right thirds): the AOVA map colours the middle.
    panels = [pixels[400:, i * 400 : (i + 1) * 400] for i in range(3)]
    colour = [float(np.mean(np.ptp(panel, axis=-1))) for panel in panels]  # 0 for grey
    assert colour[1] > 3 * max(colour[0], colour[2], 1.0)
