"""rlbench as a package, not only a checkout: the wheel carries the configs, and an installed
rlbench trains from any directory.

The wheel is built offline from a copy of the tree (``pip wheel --no-build-isolation``, no
index) and installed with ``pip install --target`` into a folder of its own, without
dependencies: this venv already has torch and the rest, and a fresh resolve could pull a
CUDA build of torch. The run then imports rlbench from that folder, not from ``src/``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from zipfile import ZipFile

import pytest
from omegaconf import OmegaConf

from tests.conftest import ROOT

# what the build reads: the project metadata (README.md is its readme), the code, the configs
BUILD_INPUTS = ("pyproject.toml", "README.md", "src", "conf")


def _pip(command: str, *args: str) -> None:
    """``pip COMMAND ARGS`` offline and without dependencies."""
    proc = subprocess.run(
        [sys.executable, "-m", "pip", command, "--no-deps", "--no-index", "--quiet", *args],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """``(copy of the build inputs, wheel built from it)``; the copy keeps ``build/`` and
    ``*.egg-info`` out of the checkout and pins what the wheel is compared against."""
    tmp = tmp_path_factory.mktemp("packaging")
    tree = tmp / "tree"
    tree.mkdir()
    skip = shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc")
    for name in BUILD_INPUTS:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, tree / name, ignore=skip)
        else:
            shutil.copy2(ROOT / name, tree / name)
    dist = tmp / "dist"
    _pip("wheel", "--no-build-isolation", "--wheel-dir", str(dist), str(tree))
    (wheel,) = dist.glob("rlbench-*.whl")
    return tree, wheel


def test_wheel_holds_every_module_and_config(built: tuple[Path, Path]) -> None:
    tree, wheel = built
    with ZipFile(wheel) as z:
        names = set(z.namelist())
    expected = {f"rlbench/{name}" for name in _files(tree / "src" / "rlbench")}
    expected |= {f"rlbench/conf/{name}" for name in _files(tree / "conf")}
    missing = sorted(expected - names)
    assert not missing, (
        f"not in the wheel: {missing[:10]}; a new subpackage of src/rlbench goes in "
        "[tool.setuptools] packages of pyproject.toml, a new kind of data file in package-data"
    )
    assert "rlbench/conf/train.yaml" in names and "rlbench/conf/hydra/help/rlbench.yaml" in names


def _files(root: Path) -> list[str]:
    return [
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    ]


def test_installed_wheel_trains_from_another_directory(
    built: tuple[Path, Path], tmp_path: Path
) -> None:
    _, wheel = built
    site = tmp_path / "site"
    _pip("install", "--target", str(site), str(wheel))
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site)}  # before the checkout's editable install

    where = subprocess.run(
        [sys.executable, "-c", "import rlbench.cli as c; print(c.__file__); print(c.CONF_DIR)"],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert where.returncode == 0, where.stderr[-3000:]
    module_file, conf_dir = where.stdout.split()
    assert Path(module_file).is_relative_to(site), module_file
    assert Path(conf_dir) == site / "rlbench" / "conf"

    # the console script pip wrote, as a user types it
    run = subprocess.run(
        [str(site / "bin" / "rlbench"), "trainer=debug", "logger=csv"],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    (results,) = (work / "outputs").glob("dqn-CartPole-v1/*/*/results.json")
    assert json.loads(results.read_text())["status"] == "completed"
    assert (results.parent / "metrics.csv").is_file()
    sources = OmegaConf.load(results.parent / ".hydra" / "hydra.yaml").hydra.runtime.config_sources
    (main,) = (s for s in sources if s.provider == "main")
    assert Path(main.path) == site / "rlbench" / "conf"  # the configs came from the wheel


def test_checkout_reads_the_top_level_conf() -> None:
    """In a checkout (the editable install ``make`` does), edits to ``conf/`` take effect
    without reinstalling: ``rlbench.conf`` is that folder."""
    from rlbench.cli import CONF_DIR

    assert CONF_DIR.resolve() == (ROOT / "conf").resolve()
