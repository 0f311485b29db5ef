from __future__ import annotations

import pytest

from otzoo import registry
from otzoo.errors import ConfigError
from otzoo.solver import Solver


def test_builtins_are_found_through_entry_points():
    ids = registry.list_solvers()
    assert {"not", "not-weak"} <= set(ids)
    assert registry.get_solver("not").id == "not"
    assert registry.list_solvers("not*") == [i for i in ids if i.startswith("not")]


def test_unknown_solver_is_one_line_with_suggestion():
    with pytest.raises(ConfigError) as err:
        registry.get_solver("nto")
    msg = str(err.value)
    assert "\n" not in msg and "did you mean" in msg and "not" in msg


def test_duplicate_id_raises():
    cls = registry.get_solver("not")

    class Other(cls):  # a different class claiming the same id
        pass

    with pytest.raises(ValueError, match="already registered"):
        registry.register(Other, "not")


def test_an_id_is_written_once_a_class_under_two_ids_is_refused():
    """The id is the entry point's name (pyproject.toml), copied to cls.id on discovery; the
    same class declared under a second name is refused with a line naming both."""
    from importlib.metadata import entry_points

    eps = {ep.name: ep.value for ep in entry_points(group=registry.GROUP)}
    for sid in registry.list_solvers():
        assert registry.get_solver(sid).id == sid
        assert sid in eps or not registry.get_solver(sid).__module__.startswith("otzoo_plugins")
    with pytest.raises(ValueError, match="already registered as 'not'.*'not-again'"):
        registry.register(registry.get_solver("not"), "not-again")


def test_solver_facts_are_checked_before_a_solver_is_built():
    from otzoo.solver import PairInfo

    info = PairInfo("voxel", (3, 2, 2, 2), (3, 8, 8, 8))
    for sid in ("not", "w2gn", "amortized", "pot"):
        with pytest.raises(ConfigError, match=r"one shape.*use otm.*\(noise-D:8\)"):
            registry.check_fits(registry.get_solver(sid), info)
    registry.check_fits(registry.get_solver("otm"), info)  # maps latents: unequal is fine


def test_solver_list_parsing():
    assert registry.parse_solver_list("not, not-weak") == ["not", "not-weak"]
    with pytest.raises(ConfigError, match="twice"):
        registry.parse_solver_list("not,not")
    with pytest.raises(ConfigError, match="no solver"):
        registry.parse_solver_list(" , ")


def test_broken_plugin_is_a_warning_not_a_crash(monkeypatch):
    class FakeEP:
        name, value = "broken-one", "nowhere.module:Thing"

        def load(self):
            raise ImportError("no module named nowhere")

    real = registry.entry_points
    monkeypatch.setattr(registry, "_discovered", False)
    monkeypatch.setattr(registry, "_FAILED", {})
    monkeypatch.setattr(registry, "entry_points", lambda group: [*real(group=group), FakeEP()])
    with pytest.warns(UserWarning, match="broken-one"):
        ids = registry.list_solvers()
    assert "not" in ids and "broken-one" not in ids
    assert issubclass(registry.get_solver("not"), Solver)
    with pytest.raises(ConfigError, match="failed to load"):
        registry.get_solver("broken-one")
