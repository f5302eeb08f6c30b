"""No pickled code from outside is ever executed: weights are read with ``weights_only=True``.

The bad-input corpus runs a malicious weights file through the application and the bundle and
checks that its marker file never appears; here, a control shows that the same file does create
the marker when loaded the unsafe way (so the corpus cases can fail), and a scan of the source
shows that every load in the product code is a safe one.
"""

import ast
from pathlib import Path

import pytest
import torch
from bad_inputs import malicious_checkpoint

from scripts.checkpoints import CheckpointError, read_checkpoint

ROOT = Path(__file__).resolve().parents[2]
PRODUCT_CODE = [ROOT / "bundle" / "scripts", ROOT / "operators", ROOT / "app", ROOT / "tools", ROOT / "benchmarks"]


def test_the_malicious_checkpoint_runs_code_when_loaded_unsafely_and_never_through_read_checkpoint(tmp_path):
    unsafe_marker, safe_marker = tmp_path / "unsafe_marker", tmp_path / "safe_marker"
    torch.load(malicious_checkpoint(tmp_path / "unsafe.pt", unsafe_marker), weights_only=False)
    assert unsafe_marker.exists(), "the control payload did not run: the corpus's malicious cases would prove nothing"

    with pytest.raises(CheckpointError, match=r"safe\.pt: it holds a pickled Python object .*weights_only=True"):
        read_checkpoint(malicious_checkpoint(tmp_path / "safe.pt", safe_marker), "cpu")
    assert not safe_marker.exists()


def _calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            yield node, ast.unparse(node.func)


def _keyword(call: ast.Call, name: str):
    for keyword in call.keywords:
        if keyword.arg == name and isinstance(keyword.value, ast.Constant):
            return keyword.value.value
    return None


def test_every_load_in_the_product_code_refuses_pickled_code():
    unsafe = []
    loads = 0
    for folder in PRODUCT_CODE:
        for path in sorted(folder.rglob("*.py")):
            for call, name in _calls(ast.parse(path.read_text(encoding="utf-8"))):
                where = f"{path.relative_to(ROOT)}:{call.lineno} {name}"
                if name == "torch.load":
                    loads += 1
                    if _keyword(call, "weights_only") is not True:
                        unsafe.append(where)
                elif name in ("pickle.load", "pickle.loads", "torch.jit.load", "dill.load", "joblib.load"):
                    unsafe.append(where)
                elif name in ("np.load", "numpy.load") and _keyword(call, "allow_pickle") is True:
                    unsafe.append(where)
    assert loads >= 1, "the scan found no torch.load at all: it is not looking at the product code"
    assert unsafe == []
