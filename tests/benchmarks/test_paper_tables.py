"""The paper tables' writing logic on tiny fake metrics: no model, no bundle run."""

import pytest

from benchmarks import plots, summary, tables
from benchmarks.tables import GLIOMA, LIVER, MISLEADING_KINDS, MethodResult


def _stats(mean, std=0.0):
    return {"mean": mean, "std": std}


def _method(dsc, nsd, fp=0.0, free=1.0):
    return {"dsc": _stats(dsc, 0.01), "nsd": _stats(nsd, 0.02), "false_positive_ml": _stats(fp, 1.0), "foreground_free_rate": free}


def _metrics(method="full", dsc=0.5, nsd=0.6, with_misleading=True):
    per_category = {
        LIVER: {"n": 2, method: _method(dsc, nsd, 3.0, 0.0)},
        GLIOMA: {"n": 3, method: _method(dsc / 2, nsd / 2, 4.0, 0.0)},
    }
    if with_misleading:
        per_category.update({c: {"n": 2, method: _method(1.0, 1.0, 12.5, 0.5)} for c in MISLEADING_KINDS})
    if method == "full":  # the bundle writes the AOVA-alone ablation next to the method
        for row in per_category.values():
            row["aova_only"] = _method(0.1, 0.2, 0.0, 1.0)
    return {"nsd_tolerance_mm": 2.0, "per_category": per_category, "per_case": []}


def _measurement(size, label, inpainting="latent", seconds=20.0, peak_mb=3000.0):
    return {
        "label": label,
        "size": size,
        "inpainting": inpainting,
        "working_shape": [128, 128, 128],
        "patches": 27,
        "inpainted_patches": 3,
        "end_to_end_seconds": seconds + 1,
        "segment_seconds": seconds,
        "segment_cpu_seconds": 30.0,
        "stage_seconds": {"preprocessing": 1.0, "features": 5.0, "inpainting": 10.0},
        "forward_seconds": {"VAE encoder": 4.0, "diffusion UNet": 14.0},
        "peak_rss_mb": peak_mb,
        "rss_after_build_mb": 600.0,
        "load_average_1min": 1.5,
    }


def _rows(markdown):
    """Body rows of the markdown tables: a header line follows no table line; separators start "|-"."""
    lines = markdown.splitlines()
    return [line for previous, line in zip(["", *lines], lines) if line.startswith("| ") and previous.startswith("|")]


def test_zero_shot_table_has_each_method_a_not_run_row_and_the_published_numbers():
    results = [
        MethodResult("DiffuGTS (this corpus)", _metrics()),
        MethodResult("AOVA map alone", _metrics(), "aova_only"),
        MethodResult("supervised 3D UNet", None, "baseline_unet"),
    ]
    markdown = tables.zero_shot_table(results)
    rows = _rows(markdown)
    assert [r.split(" | ")[0] for r in rows] == [
        "| DiffuGTS (this corpus)",
        "| AOVA map alone",
        "| supervised 3D UNet",
        "| paper: DiffuGTS",
        "| paper: ZePT",
        "| paper: Malenia",
    ]
    assert rows[0] == "| DiffuGTS (this corpus) | 2 | 50.0 ± 1.0 | 60.0 ± 2.0 | 3 | 25.0 ± 1.0 | 30.0 ± 2.0 |"
    assert "| 10.0 ± 1.0 | 20.0 ± 2.0 |" in rows[1]
    assert "not run" in rows[2]
    assert "| 63.23 | 73.58 |" in rows[3] and "| 47.51 | 49.75 |" in rows[3]


def test_ablation_tables_label_the_inference_time_restriction_and_compare_with_the_paper():
    levels = [MethodResult(f"level {i} only", _metrics(dsc=0.1 * (i + 1))) for i in range(3)]
    markdown = tables.levels_table(levels, MethodResult("all levels", _metrics()))
    assert [r.split(" | ")[0] for r in _rows(markdown)] == [
        "| level 0 only",
        "| level 1 only",
        "| level 2 only",
        "| all levels",
        "| paper: single feature level, best",
        "| paper: aggregation (DiffuGTS)",
    ]
    assert "restrict the same trained heads to one level at inference" in markdown
    inpainting = tables.inpainting_table(MethodResult("latent", _metrics()), MethodResult("direct", _metrics(dsc=0.2)))
    assert "| paper: direct generation (without LSI) | – | 60.36 | 70.31 | – | 30.55 | 32.74 |" in inpainting


def test_category_table_lists_every_category_of_one_method():
    metrics = {"per_category": {"kidney tumor": {"n": 2, "baseline_unet": _method(0.7, 0.8)}, "colon tumor": {"n": 1, "baseline_unet": _method(0.5, 0.5)}}}
    rows = _rows(tables.category_table(MethodResult("UNet", metrics, "baseline_unet")))
    assert rows == ["| colon tumor | 1 | 50.0 ± 1.0 | 50.0 ± 2.0 |", "| kidney tumor | 2 | 70.0 ± 1.0 | 80.0 ± 2.0 |"]


def test_misleading_table_gives_false_positive_ml_and_foreground_free_rate_per_kind():
    markdown = tables.misleading_table([MethodResult("DiffuGTS", _metrics()), MethodResult("UNet", _metrics("baseline_unet"), "baseline_unet")])
    rows = _rows(markdown)
    assert len(rows) == 2 * len(MISLEADING_KINDS)
    assert "| absent disease | healthy CT, prompt 'liver tumor' | DiffuGTS | 2 | 12.50 ± 1.00 | 50% |" in rows
    assert any(r.startswith("| wrong organ and modality |") and "| UNet |" in r for r in rows)
    partial = tables.misleading_table([MethodResult("DiffuGTS", _metrics(with_misleading=False)), MethodResult("UNet", None)])
    assert "| DiffuGTS | – | no cases | no cases |" in partial and "| UNet | – | not run | not run |" in partial


def test_steps_performance_and_gpu_tables():
    steps = tables.steps_table(
        [{"steps": s, "n": 2, "dsc": _stats(0.1 * s), "nsd": _stats(0.2), "seconds_per_case": s, "inpainting_seconds_per_case": 0.0} for s in (5, 1)]
    )
    assert [r.split(" | ")[0] for r in _rows(steps)] == ["| 1", "| 5"]
    measurements = [_measurement("ct128", "128^3 CT", seconds=20.0), _measurement("mr512", "512x512x155 MR", peak_mb=7000.0)]
    measurements[1]["patch_size"] = [64, 64, 64]
    measurements[1]["save_maps"] = "all"
    performance = tables.performance_table(measurements)
    assert "| 128^3 CT | latent | – | – | 128x128x128 | 27 (3) | 21.0 | 20.0 | 30.0 | 18.0 | 10% | 2.93 | 0.59 | 1.5 |" in performance
    assert "| 512x512x155 MR | latent | mask + all maps | 64x64x64 |" in performance
    stages = tables.stage_table(measurements)
    assert "| seconds | 128^3 CT (latent) | 512x512x155 MR (latent, 64x64x64 patch, writes mask + all maps) |" in stages
    assert "| stage: features | 5.00 | 5.00 |" in stages
    targets = "\n".join(tables.performance_targets(measurements))
    assert "end to end (latent): 21.0 s (target < 30 s: met)" in targets
    assert "peak memory (latent, 64x64x64 patch, writes mask + all maps): 6.84 GB (target < 6 GB: NOT met)" in targets
    assert "time outside forward passes: 10.0% (target < 15%: met)" in targets
    gpu = tables.gpu_table([{"label": "256^3 CT", "status": "not measured (no GPU)"}])
    assert "| 256^3 CT | – | not measured (no GPU) |" in gpu


def test_plots_write_pngs(tmp_path):
    results = [MethodResult("DiffuGTS", _metrics()), MethodResult("missing", None)]
    written = [
        plots.tumor_bars(results, tmp_path / "zero_shot.png", "zero-shot"),
        plots.misleading_bars(results, tmp_path / "misleading.png"),
        plots.steps_plot([{"steps": s, "dsc": _stats(0.3), "seconds_per_case": s} for s in (1, 2)], tmp_path / "steps.png"),
        plots.stage_bars([_measurement("ct128", "128^3 CT")], tmp_path / "performance.png"),
    ]
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in written)


def test_summary_carries_provenance_and_every_stage_section(tmp_path):
    info = {
        "date": "2026-01-01 00:00 UTC",
        "commit": "0123456789abcdef",
        "uncommitted_changes": True,
        "cpu": "Test CPU",
        "cores": 2,
        "memory_gb": 8.0,
        "gpu": None,
        "load_average": [1.0, 2.0, 3.0],
        "torch": "9.9",
        "monai": "1.6",
        "python": "3.11",
        "weights": {"diffugts_heads.pt": "ab" * 32},
    }
    stamp = summary.stamp(info, limit=2)
    summary.write_section(tmp_path, "misleading", stamp, "| table |\n")
    summary.write_section(tmp_path, "zero_shot", stamp, "| zero-shot table |\n")
    text = summary.write_summary(tmp_path, info, "python -m benchmarks.paper_tables --limit 2").read_text()
    assert "| machine | Test CPU, 2 cores, 8 GB RAM, GPU: none |" in text
    assert "| git commit | 0123456789abcdef (with uncommitted changes) |" in text
    assert "torch 9.9" in text and "2026-01-01 00:00 UTC" in text
    assert text.index("## Zero-shot") < text.index("## Misleading prompts")  # stage order, not write order
    assert "at most 2 cases per split" in text and "heads sha256 abababababab" in text


def test_stage_selection_rejects_unknown_stages():
    assert summary.parse_stages("steps,zero_shot") == ["steps", "zero_shot"]
    with pytest.raises(ValueError, match="unknown stage"):
        summary.parse_stages("zero_shot,bogus")
