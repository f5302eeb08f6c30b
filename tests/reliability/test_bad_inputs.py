"""Every bad input of the corpus gives a correct result or one clear line, and harms nothing.

For each entry of :data:`bad_inputs.BAD_INPUTS`:

* expected ``ok``: exit status 0, the complete set of outputs, no temporary file left behind,
  and the entry's own checks (the mask on the input grid, the right series referenced ...);
* expected an error: a non-zero exit status, exactly one ``error:`` line that names the problem
  and the file (folder, variable) at fault, no traceback, and no output file;
* either way: every input file byte-identical (sha256 before and after), and no code from a
  weights file executed.
"""

from pathlib import Path

import pytest
from bad_inputs import APP_OUTPUTS, BAD_INPUTS, OK
from runners import error_lines, files_under, run, sha256_tree


def _expected_outputs(invocation):
    if invocation.runner.startswith("app"):
        return APP_OUTPUTS
    stem = Path(invocation.bundle_args["input_image"]).name.split(".")[0]
    return sorted(f"{stem}{suffix}" for suffix in ("_report.json", "_seg.nii.gz"))  # the default writes no maps


@pytest.mark.slow
@pytest.mark.parametrize("case", BAD_INPUTS, ids=[case.name for case in BAD_INPUTS])
def test_bad_input(case, sources, tmp_path, clean_environment):
    invocation = case.build(sources, tmp_path)
    inputs_before = sha256_tree(invocation.inputs)
    outputs_before = files_under(invocation.output)

    outcome = run(invocation)

    assert "Traceback" not in outcome.stderr, outcome.stderr[-3000:]
    assert sha256_tree(invocation.inputs) == inputs_before, "an input file changed"
    if invocation.marker is not None:
        assert not invocation.marker.exists(), "code from a weights file was executed"
    if case.expect == OK:
        assert outcome.status == 0, outcome.stderr[-3000:]
        assert error_lines(outcome, invocation.runner) == []
        assert files_under(invocation.output) == _expected_outputs(invocation)
        if invocation.check is not None:
            invocation.check(invocation.output)
    else:
        assert outcome.status != 0
        lines = error_lines(outcome, invocation.runner)
        assert len(lines) == 1, outcome.stderr[-3000:]
        assert case.expect in lines[0]
        for name in invocation.names:
            assert name in lines[0], f"the error does not name {name}"
        assert files_under(invocation.output) == outputs_before, "a failed run left output behind"


def test_the_corpus_covers_the_issue():
    """At least 20 entries, both commands, both outcomes, and every runner."""
    assert len(BAD_INPUTS) >= 20 and len({case.name for case in BAD_INPUTS}) == len(BAD_INPUTS)
    assert {case.expect == OK for case in BAD_INPUTS} == {True, False}
    prefixes = {case.name.split("-")[0] + ("-cli" if "-cli-" in case.name else "") for case in BAD_INPUTS}
    assert prefixes == {"app", "app-cli", "bundle", "bundle-cli"}
