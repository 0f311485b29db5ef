"""The example third-party package (examples/plugin-package), installed as a user would
(`pip install -e examples/plugin-package`; .ci/run does it): found through its entry point,
conformant, and judged beside a built-in solver by a tiny compare."""

from __future__ import annotations

import json
from importlib.metadata import PackageNotFoundError, version

import pytest

from tests.conftest import TINY, run_main

try:
    version("otzoo-example-plugin")
    INSTALLED = True
except PackageNotFoundError:
    INSTALLED = False

pytestmark = pytest.mark.skipif(
    not INSTALLED, reason="pip install -e examples/plugin-package (.ci/run installs it)"
)


def test_example_plugin_is_listed_and_conformant():
    from otzoo.registry import get_solver
    from otzoo.testing import check_solver

    code, out, _ = run_main("solvers")
    assert code == 0 and "moment-match" in out
    check_solver(get_solver("moment-match"))


def test_example_plugin_in_a_tiny_compare(tmp_path):
    out = tmp_path / "cmp"
    args = ("compare", "--solvers", "moment-match,pot-linear", "--pair", "gauss:2", *TINY)
    code, _, err = run_main(*args, "--out", str(out))
    assert code == 0, err
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) == {"moment-match", "pot-linear"}
    assert metrics["moment-match"]["l2_uvp"] < 100
