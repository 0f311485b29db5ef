"""Every registered solver passes the same conformance checks (timm-style: new solvers are
tested for free)."""

from __future__ import annotations

import pytest

from otzoo.registry import get_solver, list_solvers
from otzoo.testing import check_solver


@pytest.mark.parametrize("solver_id", list_solvers())
def test_solver_contract(solver_id):
    check_solver(get_solver(solver_id))


def test_template_plugin_passes_the_contract(monkeypatch):
    from otzoo import registry
    from otzoo_plugins import _template

    monkeypatch.setattr(registry, "_SOLVERS", dict(registry._SOLVERS))  # forget it afterwards
    monkeypatch.setattr(_template.TranslationSolver, "id", "")
    registry.register(_template.TranslationSolver, "template-translation")
    check_solver(_template.TranslationSolver)
