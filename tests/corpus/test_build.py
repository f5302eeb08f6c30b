import json

import nibabel as nib
import numpy as np
import pytest

from corpus import CorpusConfig
from corpus.__main__ import main


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--size", "8"], "--size"),
        (["--cases-per-category", "0"], "--cases-per-category"),
        (["--seed-base", "-3"], "--seed-base"),
        (["--ct-spacing", "abc"], "--ct-spacing"),
    ],
)
def test_bad_arguments_exit_with_a_one_line_error(tmp_path, capsys, arguments, message):
    with pytest.raises(SystemExit) as exit_info:
        main(["--output", str(tmp_path / "c"), *arguments])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert message in error and error.startswith("python -m corpus: error:")
    assert not (tmp_path / "c").exists()


def test_missing_output_is_an_error(capsys):
    with pytest.raises(SystemExit):
        main([])
    assert "--output" in capsys.readouterr().err


def test_config_validates_its_fields(tmp_path):
    with pytest.raises(ValueError, match="test_cases"):
        CorpusConfig(output=tmp_path, test_cases=0)
    with pytest.raises(ValueError, match="size"):
        CorpusConfig(output=tmp_path, size=(32, 32))


def test_the_command_writes_cases_datalists_montage_and_summary(tiny_corpus):
    for folder in ("images", "labels", "organs", "parts", "metadata", "datalists"):
        assert any((tiny_corpus / folder).iterdir()), folder
    assert (tiny_corpus / "montage.png").stat().st_size > 10_000
    summary = json.loads((tiny_corpus / "corpus.json").read_text())
    assert summary["orientation"] == "RAS+" and summary["cases"] == len(list((tiny_corpus / "images").glob("*.nii.gz")))
    assert not list(tiny_corpus.rglob(".*"))  # temporary names were all renamed


def test_every_written_case_keeps_its_geometry_and_metadata(tiny_corpus):
    for metadata_path in sorted((tiny_corpus / "metadata").glob("*.json")):
        metadata = json.loads(metadata_path.read_text())
        stem = metadata["case_id"]
        image = nib.load(tiny_corpus / "images" / f"{stem}.nii.gz")
        label = nib.load(tiny_corpus / "labels" / f"{stem}.nii.gz")
        np.testing.assert_allclose(image.affine, metadata["affine_ras"], atol=1e-4)
        np.testing.assert_allclose(image.header.get_zooms(), metadata["spacing_mm"], rtol=1e-5)
        assert nib.aff2axcodes(image.affine) == ("R", "A", "S")
        assert image.shape == label.shape == tuple(metadata["shape"])
        volume_ml = float(np.asarray(label.dataobj).sum()) * float(np.prod(metadata["spacing_mm"])) / 1000.0
        assert volume_ml == pytest.approx(metadata["tumor_volume_ml"], abs=1e-3)
        if metadata["lesions"]:
            assert metadata["prompt"] == metadata["category"] and set(metadata["attributes"]) == set(metadata["lesions"][0]["attributes"])
            assert "contrast" in metadata["measured"]


def test_a_second_build_reuses_the_cases_this_generator_version_wrote(tmp_path):
    from corpus.__main__ import main as corpus_main

    arguments = [
        "--output",
        str(tmp_path),
        "--cases-per-category",
        "1",
        "--size",
        "32",
        "--ct-spacing",
        "8",
        "--mr-spacing",
        "6",
        "--quiet",
        "--no-real",
        "--no-montage",
    ]
    assert corpus_main(arguments) == 0
    image = next((tmp_path / "images").glob("kidney_tumor_*.nii.gz"))
    before = image.stat().st_mtime_ns
    datalist = (tmp_path / "datalists" / "seen_train.json").read_text()
    assert corpus_main(arguments) == 0
    assert image.stat().st_mtime_ns == before  # not written again
    assert (tmp_path / "datalists" / "seen_train.json").read_text() == datalist
    assert corpus_main([*arguments, "--no-reuse"]) == 0
    assert image.stat().st_mtime_ns != before
    # Another grid is another case: it is made anew.
    rewritten = image.stat().st_mtime_ns
    other_grid = [
        "--output",
        str(tmp_path),
        "--cases-per-category",
        "1",
        "--size",
        "32",
        "--ct-spacing",
        "7",
        "--mr-spacing",
        "6",
        "--quiet",
        "--no-real",
        "--no-montage",
    ]
    assert corpus_main(other_grid) == 0
    assert image.stat().st_mtime_ns != rewritten


def test_the_summary_reports_and_warns_of_a_ct_subtle_tail_over_15_percent(caplog):
    from corpus.build import _summarise, _Written

    def written(category, contrasts, relative=False):
        extra = {"contrast_relative": 0.3} if relative else {}
        return {f"{category}{i}": _Written({"category": category, "source": "phantom"}, {"contrast": c, **extra}) for i, c in enumerate(contrasts)}

    cases = {
        **written("pancreas tumor", [-10, -30, -40, -50, -60]),
        **written("kidney tumor", [-50] * 9 + [-12]),
        **written("brain tumor", [5, 6], relative=True),
    }
    with caplog.at_level("WARNING", logger="corpus.build"):
        summary = _summarise(cases)
    assert summary["pancreas tumor (phantom)"]["contrast"]["share_under_20_hu"] == 0.2
    assert summary["kidney tumor (phantom)"]["contrast"]["share_under_20_hu"] == 0.1
    assert "share_under_20_hu" not in summary["brain tumor (phantom)"]["contrast"]  # MR: relative contrast, no HU rule
    assert [r.getMessage().split(":")[0] for r in caplog.records] == ["pancreas tumor (phantom)"]
