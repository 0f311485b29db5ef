"""Run configuration: three frozen dataclasses (data, train, solver) resolved from presets and
checked `--set key=value` overrides, saved beside every run as JSON.

Keys live in one flat namespace (`--set grid=8 --set lr_t=3e-4 --set steps=50`), so the three
configs must not share field names; an unknown key or a value of the wrong type is refused
with a one-line error before anything is written.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass
from typing import Any

from otzoo.data import DataConfig, parse_pair
from otzoo.errors import ConfigError
from otzoo.runtime import resolve_device
from otzoo.solver import Solver, SolverConfig

PRESETS = ("tiny", "quick", "full")
FOLLOW_STEPS = "lr_decay_steps"  # a schedule length that follows the run's steps


@dataclass(frozen=True)
class TrainConfig:
    """What the shared training loop needs; the same for every solver."""

    steps: int = 1000  # outer steps (each solver defines what one step does)
    batch_size: int = 64
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    log_every: int = 1  # TensorBoard scalars
    image_every: int = 100  # TensorBoard voxel pictures of a fixed test batch
    ckpt_every: int = 100
    eval_every: int = 0  # test-split metrics during training (0: only at the end)
    eval_samples: int = 256  # test samples used by the in-training metrics
    keep_checkpoints: int = 2
    amp: str = "auto"  # bf16 autocast: auto (on for CUDA) | bf16 | off
    cuda_batch_scale: int = 4  # on CUDA, the preset's batch size times this (unless set)


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
    "quick": {"grid": 16, "steps": 350, "batch_size": 32, "image_every": 50, "ckpt_every": 50},
    "full": {"grid": 16, "steps": 10000, "batch_size": 64, "image_every": 500, "ckpt_every": 500},
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

    def to_dict(self) -> dict[str, Any]:
        return {
            "solver": self.solver,
            "pair": self.pair,
            "preset": self.preset,
            "seed": self.seed,
            "data": dataclasses.asdict(self.data),
            "train": dataclasses.asdict(self.train),
            "solver_config": dataclasses.asdict(self.solver_config),
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


def _scale_batch_for_cuda(values: dict[str, Any], user: dict[str, Any]) -> None:
    """A GPU idles on CPU-sized batches: when the run lands on CUDA and the user did not choose
    a batch size, the preset's is multiplied by `cuda_batch_scale` (the resolved value is what
    config.json records, so a resumed run keeps it)."""
    scale = int(values.get("cuda_batch_scale", TrainConfig.cuda_batch_scale))
    if "batch_size" in user or scale <= 1:
        return
    if resolve_device(str(values.get("device", TrainConfig.device))).type == "cuda":
        values["batch_size"] = int(values.get("batch_size", TrainConfig.batch_size)) * scale


def resolve(
    solver_cls: type[Solver],
    pair: str,
    preset: str = "quick",
    overrides: dict[str, Any] | None = None,
    seed: int = 0,
) -> RunConfig:
    """defaults <- core preset <- solver preset <- solver's pair preset <- overrides, each key
    routed to its config. A preset's lr schedule that spans the preset's whole run
    (`lr_decay_steps` == `steps`) follows a user's `steps` unless the user sets it too."""
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    fields = config_fields(solver_cls)
    values: dict[str, Any] = {}
    values.update(CORE_PRESETS[preset])
    values.update(solver_cls.presets.get(preset, {}))
    values.update(solver_cls.pair_presets(parse_pair(pair), preset))
    user = overrides or {}
    if (
        "steps" in user
        and FOLLOW_STEPS not in user
        and FOLLOW_STEPS in values
        and values[FOLLOW_STEPS] == values.get("steps")
    ):
        values[FOLLOW_STEPS] = user["steps"]
    values.update(user)
    _scale_batch_for_cuda(values, user)
    sections: dict[str, dict[str, Any]] = {"data": {}, "train": {}, "solver": {}}
    for key, val in values.items():
        if key not in fields:
            raise ConfigError(f"preset key {key!r} of {solver_cls.id!r} is not a config field")
        sections[fields[key][0]][key] = coerce(val, fields[key][1], key)
    return RunConfig(
        solver=solver_cls.id,
        pair=pair,
        preset=preset,
        seed=seed,
        data=DataConfig(**sections["data"]),
        train=TrainConfig(**sections["train"]),
        solver_config=solver_cls.Config(**sections["solver"]),
    )
