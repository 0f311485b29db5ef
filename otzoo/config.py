"""Run configuration: three frozen dataclasses (data, train, solver) resolved from presets and
checked `--set key=value` overrides, saved beside every run as JSON.

Keys live in one flat namespace (`--set grid=8 --set lr_t=3e-4 --set steps=50`), so the three
configs must not share field names; an unknown key or a value of the wrong type is refused
with a one-line error before anything is written.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import re
import types
import typing
from dataclasses import dataclass
from typing import Any

from otzoo.data import DataConfig, PairSpec, parse_pair
from otzoo.errors import ConfigError, check_value
from otzoo.frames import FRAMES, check_frame
from otzoo.solver import Solver, SolverConfig

PRESETS = ("tiny", "quick", "full")
LR_SCHEDULES = ("constant", "cosine")
AMP_MODES = ("auto", "bf16", "off")


@dataclass(frozen=True)
class TrainConfig:
    """What the shared training loop needs; the same for every solver."""

    steps: int = 1000  # outer steps (each solver defines what one step does)
    batch_size: int = 64  # samples per batch (each solver draws several batches per step)
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    log_every: int = 1  # TensorBoard scalars
    image_every: int = 100  # TensorBoard voxel pictures of a fixed test batch
    ckpt_every: int = 100  # checkpoint every this many outer steps (and at the end)
    eval_every: int = 0  # test-split metrics during training (0: only at the end)
    eval_samples: int = 256  # test samples used by the in-training metrics
    keep_checkpoints: int = 2  # newest checkpoints kept in ckpt/
    amp: str = "auto"  # bf16 autocast: auto (on for CUDA) | bf16 | off
    lr_schedule: str = "constant"  # constant | cosine (every lr decays to 1e-4 x, w2ot's form)
    lr_decay_steps: int | None = None  # cosine length in outer steps; None: the run's steps
    select_every: int = 0  # score the map on training data every N steps; end with the best
    select_samples: int = 256  # training pairs the selection score uses
    channels_last: bool = False  # voxel nets in the channels-last 3D layout (faster; rounds apart)
    frame: str = "none"  # none | pca: rotated digits mapped in each input's principal axes

    def __post_init__(self) -> None:
        at_least = {"steps": 1, "batch_size": 1, "log_every": 1, "ckpt_every": 1}
        at_least |= {"image_every": 0, "eval_every": 0, "eval_samples": 1, "keep_checkpoints": 1}
        at_least |= {"select_every": 0, "select_samples": 2}
        for key, low in at_least.items():
            check_value(
                key, getattr(self, key), lambda v, low=low: v >= low, f"an integer >= {low}"
            )
        check_value("amp", self.amp, lambda v: v in AMP_MODES, " | ".join(AMP_MODES))
        check_value(
            "lr_schedule", self.lr_schedule, lambda v: v in LR_SCHEDULES, " | ".join(LR_SCHEDULES)
        )
        check_value("frame", self.frame, lambda v: v in FRAMES, " | ".join(FRAMES))
        if self.lr_decay_steps is not None:
            check_value(
                "lr_decay_steps", self.lr_decay_steps, lambda v: v >= 1, "an integer >= 1 or none"
            )

    def decay_steps(self) -> int:
        """The cosine schedule's length for the training loop (0: constant lr)."""
        if self.lr_schedule == "constant":
            return 0
        return self.steps if self.lr_decay_steps is None else self.lr_decay_steps


# Shared preset values (data + train). Solvers add their own in `Solver.presets`.
CORE_PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {
        "grid": 8,
        "max_per_digit": 40,
        "steps": 20,
        "batch_size": 8,
        "image_every": 10,
        "ckpt_every": 10,
        "eval_samples": 32,
    },
    "quick": {
        "grid": 16,
        "steps": 350,
        "batch_size": 32,
        "image_every": 50,
        "ckpt_every": 50,
        "eval_every": 50,
    },
    "full": {
        "grid": 16,
        "steps": 10000,
        "batch_size": 64,
        "image_every": 500,
        "ckpt_every": 500,
        "eval_every": 500,
    },
}


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines one training run; `config.json` in the run folder."""

    solver: str
    pair: str
    preset: str
    seed: int
    data: DataConfig
    train: TrainConfig
    solver_config: SolverConfig
    # Warm start (`--init-from`): the run folder whose final networks this run started from,
    # and the step of the checkpoint it took them from (set when they are loaded). Recorded so
    # a reader of config.json knows the run did not start from random weights.
    init_from: str | None = None
    init_step: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "solver": self.solver,
            "pair": self.pair,
            "preset": self.preset,
            "seed": self.seed,
            "data": dataclasses.asdict(self.data),
            "train": dataclasses.asdict(self.train),
            "solver_config": dataclasses.asdict(self.solver_config),
            "init_from": self.init_from,
            "init_step": self.init_step,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any], solver_cls: type[Solver]) -> RunConfig:
        try:
            return cls(
                solver=d["solver"],
                pair=d["pair"],
                preset=d["preset"],
                seed=int(d["seed"]),
                data=build_dataclass(DataConfig, d["data"]),
                train=build_dataclass(TrainConfig, d["train"]),
                solver_config=build_dataclass(solver_cls.Config, d["solver_config"]),
                init_from=None if d.get("init_from") is None else str(d["init_from"]),
                init_step=None if d.get("init_step") is None else int(d["init_step"]),
            )
        except (KeyError, TypeError, ValueError) as err:
            raise ConfigError(f"run config is malformed ({err}); start a new run folder") from err


def build_dataclass(cls: type, values: dict[str, Any]) -> Any:
    """Instantiate a config dataclass from loose values (JSON or CLI strings), type-checked."""
    hints = typing.get_type_hints(cls)
    return cls(**{k: coerce(v, hints[k], k) for k, v in values.items()})


def config_fields(solver_cls: type[Solver]) -> dict[str, tuple[str, Any]]:
    """Every settable key -> (which config owns it, its type)."""
    out: dict[str, tuple[str, Any]] = {}
    for section, cls in (
        ("data", DataConfig),
        ("train", TrainConfig),
        ("solver", solver_cls.Config),
    ):
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if f.name in out:
                raise ValueError(
                    f"config key {f.name!r} is defined twice ({out[f.name][0]}, {section})"
                )
            out[f.name] = (section, hints[f.name])
    return out


def coerce(value: Any, typ: Any, key: str) -> Any:
    """Convert a CLI string (or JSON value) to a field's type; refuse what does not fit."""
    origin = typing.get_origin(typ)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(typ) if a is not type(None)]
        if value is None or (isinstance(value, str) and value.lower() == "none"):
            return None
        return coerce(value, args[0], key)
    if origin is tuple:
        args = typing.get_args(typ)
        items = value.split(",") if isinstance(value, str) else list(value)
        items = [i.strip() if isinstance(i, str) else i for i in items if i != ""]
        inner = args[0] if len(args) == 2 and args[1] is Ellipsis else None
        if inner is None and len(items) != len(args):
            raise ConfigError(
                f"--set {key}: expected {len(args)} comma-separated values, got {value!r}"
            )
        return tuple(coerce(v, inner or args[i], key) for i, v in enumerate(items))
    if origin is typing.Literal:
        choices = typing.get_args(typ)
        if value not in choices:
            raise ConfigError(
                f"--set {key}: {value!r} is not one of {', '.join(map(str, choices))}"
            )
        return value
    try:
        if typ is bool:
            if isinstance(value, bool):
                return value
            s = str(value).strip().lower()
            if s in ("1", "true", "yes", "on"):
                return True
            if s in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if typ is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            return int(value) if not isinstance(value, str) else int(value.strip())
        if typ is float:
            return float(value)
        if typ is str:
            return str(value)
    except (TypeError, ValueError):
        name = getattr(typ, "__name__", str(typ))
        raise ConfigError(f"--set {key}={value!r}: expected a value of type {name}") from None
    return value


def parse_overrides(items: list[str], solver_cls: type[Solver]) -> dict[str, Any]:
    """['lr_t=3e-4', 'grid=8'] -> typed dict; unknown keys get the closest known ones named."""
    fields = config_fields(solver_cls)
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected key=value, e.g. --set steps=100")
        if key not in fields:
            close = difflib.get_close_matches(key, list(fields), n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise ConfigError(
                f"--set {key}: unknown key for solver {solver_cls.id!r}{hint} "
                f'(see "otzoo solvers --keys {solver_cls.id}")'
            )
        out[key] = coerce(raw, fields[key][1], key)
    return out


def _data_config(values: dict[str, Any], fields: dict[str, tuple[str, Any]]) -> DataConfig:
    """The DataConfig that `values` make; keys of other configs, and unknown ones (refused
    later with their own message), are left out."""
    own = {k: v for k, v in values.items() if k in fields and fields[k][0] == "data"}
    return DataConfig(**{k: coerce(v, fields[k][1], k) for k, v in own.items()})


def resolve(
    solver_cls: type[Solver],
    pair: str | PairSpec,
    preset: str = "quick",
    overrides: dict[str, Any] | None = None,
    seed: int = 0,
) -> RunConfig:
    """The one way a run's config is made (train, compare, bench, tests): each layer overrides
    the one before, key by key, and every key is routed to the config that owns it:

    1. the dataclass defaults (DataConfig, TrainConfig, the solver's Config);
    2. CORE_PRESETS[preset] (grid, steps, batch size, logging);
    3. the solver's `presets[preset]`;
    4. the solver's `pair_presets(pair, preset, data)` (e.g. its vector settings per
       dimension, or settings for rotated data), `data` being the DataConfig of the layers
       1, 2, 3 and 5;
    5. `overrides` (the user's --set and options), typed values or strings alike.

    The result depends on nothing else: not on the machine, not on the device.
    """
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    spec = parse_pair(pair) if isinstance(pair, str) else pair
    fields = config_fields(solver_cls)
    values: dict[str, Any] = {}
    values.update(CORE_PRESETS[preset])
    values.update(solver_cls.presets.get(preset, {}))
    data = _data_config({**values, **(overrides or {})}, fields)
    values.update(solver_cls.pair_presets(spec, preset, data))
    values.update(overrides or {})
    sections: dict[str, dict[str, Any]] = {"data": {}, "train": {}, "solver": {}}
    for key, val in values.items():
        if key not in fields:
            raise ConfigError(f"preset key {key!r} of {solver_cls.id!r} is not a config field")
        sections[fields[key][0]][key] = coerce(val, fields[key][1], key)
    data, train = DataConfig(**sections["data"]), TrainConfig(**sections["train"])
    check_frame(train.frame, data.rotation, spec.kind)
    return RunConfig(
        solver=solver_cls.id,
        pair=spec.raw,
        preset=preset,
        seed=seed,
        data=data,
        train=train,
        solver_config=solver_cls.Config(**sections["solver"]),
    )


def describe_keys(solver_cls: type[Solver]) -> dict[str, str]:
    """Each settable key's one-line meaning: the comment beside its field where the config
    dataclass is written (a subclass's comment wins over its base's), so the docs of a key
    live in one place, next to its default, for built-in and third-party solvers alike."""
    found: dict[str, str] = {}
    classes = [DataConfig, TrainConfig, *reversed(solver_cls.Config.__mro__)]
    for cls in classes:
        if not dataclasses.is_dataclass(cls):
            continue
        try:
            source = inspect.getsource(cls)
        except (OSError, TypeError):
            continue
        for m in re.finditer(r"^\s+(\w+): [^\n#]*#\s*(.+)$", source, re.MULTILINE):
            found[m.group(1)] = m.group(2).strip()
    return found
