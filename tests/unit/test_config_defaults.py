"""One source of defaults: the structured-config dataclasses, the constructors they target
and the base yaml of each schema must not disagree.

A constructor default that differs from its dataclass is a trap (code that builds the
class directly gets other behaviour than the CLI); a base yaml (``conf/algo/dqn.yaml`` for
``schema_algo_dqn``) that restates a value differently from the dataclass splits the
default in two places.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any

import hydra
import pytest
from omegaconf import OmegaConf

from rlbench import config as C
from tests.conftest import CONF


def _default(f: dataclasses.Field[Any]) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def _comparable(value: Any) -> Any:
    """Lists and tuples compare equal; unresolved interpolations and MISSING are not values."""
    if isinstance(value, tuple | list):
        return [_comparable(v) for v in value]
    return value


def _is_value(value: Any) -> bool:
    return not (
        value is dataclasses.MISSING
        or value == "???"
        or (isinstance(value, str) and "${" in value)
        or dataclasses.is_dataclass(value)
    )


def schemas() -> list[tuple[str, type]]:
    out = []
    for name, obj in vars(C).items():
        if not (isinstance(obj, type) and dataclasses.is_dataclass(obj)):
            continue
        target = {f.name: f for f in dataclasses.fields(obj)}.get("_target_")
        # rlbench's own targets: another library's defaults (WandbLogger) are its authors'
        if target is not None and str(target.default).startswith("rlbench."):
            out.append((name, obj))
    return out


@pytest.mark.parametrize("name,schema", schemas())
def test_constructor_defaults_match_the_dataclass(name: str, schema: type) -> None:
    fields = {f.name: f for f in dataclasses.fields(schema)}
    target = fields["_target_"].default
    try:
        fn = hydra.utils.get_class(target)
    except Exception:  # a factory function (network=auto)
        fn = hydra.utils.get_method(target)
    theirs: dict[str, Any] = {}
    if dataclasses.is_dataclass(fn):  # defaults of a dataclass target are its fields'
        theirs = {f.name: _default(f) for f in dataclasses.fields(fn)}
    else:
        theirs = {
            k: p.default
            for k, p in inspect.signature(fn).parameters.items()
            if p.default is not inspect.Parameter.empty
        }
    drift = {}
    for key, default in theirs.items():
        if key not in fields or default is dataclasses.MISSING:
            continue
        ours = _default(fields[key])
        if _is_value(ours) and _comparable(ours) != _comparable(default):
            drift[key] = (ours, default)
    assert not drift, f"{name} vs {target}: (dataclass, constructor) differ: {drift}"


def base_yamls() -> list[tuple[str, str]]:
    """``(yaml path, schema name)`` for every yaml that extends a schema of its own name."""
    pairs = []
    for path in sorted(CONF.glob("*/*.yaml")):
        group, option = path.parent.name, path.stem
        schema = f"schema_{group}_{option}"
        if hasattr(C, "register_configs") and schema in path.read_text():
            pairs.append((str(path.relative_to(CONF)), schema))
    return pairs


def test_base_yamls_are_found() -> None:
    names = {y for y, _ in base_yamls()}
    assert {
        "algo/dqn.yaml",
        "algo/ppo.yaml",
        "algo/sac.yaml",
        "sampler/epsilon_greedy.yaml",
    } <= names


@pytest.mark.parametrize("path,schema", base_yamls())
def test_base_yaml_restates_no_default_differently(path: str, schema: str) -> None:
    from hydra.core.config_store import ConfigStore

    C.register_configs()
    node = ConfigStore.instance().load(f"{schema}.yaml").node
    defaults = OmegaConf.to_container(node, resolve=False)
    assert isinstance(defaults, dict)
    raw = OmegaConf.load(CONF / path)
    body = OmegaConf.to_container(raw, resolve=False)
    assert isinstance(body, dict)
    body.pop("defaults", None)
    group = path.split("/")[0]
    if group in body and isinstance(body[group], dict) and "_target_" not in body:
        body = body[group]  # a `# @package _global_` yaml keeps its group's keys under it

    def walk(ours: dict[str, Any], theirs: dict[str, Any], prefix: str) -> list[str]:
        bad = []
        for key, value in theirs.items():
            if key not in ours:
                continue
            if isinstance(value, dict) and isinstance(ours[key], dict):
                bad += walk(ours[key], value, f"{prefix}{key}.")
            elif (
                _is_value(ours[key])
                and _is_value(value)
                and _comparable(ours[key]) != _comparable(value)
            ):
                bad.append(f"{prefix}{key}: schema {ours[key]!r}, yaml {value!r}")
        return bad

    drift = walk(defaults, body, f"{group}.")
    assert not drift, f"conf/{path} disagrees with {schema}: {drift}"
