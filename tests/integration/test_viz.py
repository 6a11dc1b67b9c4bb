"""``rlbench-viz``: the run index, config diff and curve statistics, the media route, the CLI,
and the page itself in a real headless browser (Playwright driving Debian's chromium).

The browser test saves a screenshot to ``outputs/viz/rlbench-viz.png``.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.stats
import yaml

pytest.importorskip("dash")
pytest.importorskip("dash_ag_grid")

from rlbench.analysis.stats import iqm_curve
from rlbench.viz.app import HOST, MEDIA_ROUTE, create_app, figure, main
from rlbench.viz.data import (
    RunIndex,
    config_diff,
    default_metric,
    flatten_config,
    matches_filters,
)

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOT = ROOT / "outputs" / "viz" / "rlbench-viz.png"
SWEEP = "multirun/2026-01-01/10-00-00"
EVIL_ERROR = "NonFiniteLossError: <b>nan</b> loss"
# eval/return_mean at env steps 0, 1000, ..., 5000
CURVES = {
    "0_dqn_seed0": ("dqn", 0, 2.5e-4, [10, 60, 150, 300, 420, 480]),
    "1_dqn_seed1": ("dqn", 1, 2.5e-4, [12, 40, 120, 250, 380, 500]),
    "2_ddqn_seed0": ("ddqn", 0, 1e-3, [9, 30, 90, 180, 260, 330]),
    "3_ddqn_seed1": ("ddqn", 1, 1e-3, [11, 35, 70, 150, 220, 280]),
}
LIVE = "dqn-CartPole-v1/2026-01-02/11-00-00_seed7"


def write_run(
    run_dir: Path,
    *,
    algo: str,
    seed: int,
    lr: float,
    evals: list[float],
    status: str | None = "completed",
    error: str | None = None,
    double: bool | None = None,
) -> None:
    """A run dir as the engine writes it: config, sparse metrics.csv, results.json."""
    (run_dir / ".hydra").mkdir(parents=True)
    config: dict[str, Any] = {
        "seed": seed,
        "tags": ["demo", algo],
        "algo": {"name": algo, "lr": lr, "gamma": 0.99},
        "env": {"id": "CartPole-v1", "name": "cartpole"},
    }
    if double is not None:
        config["algo"]["double"] = double
    (run_dir / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    lines = ["env_step,train/loss,eval/return_mean"]
    for k, value in enumerate(evals):
        lines += [f"{k * 1000},,{value}", f"{k * 1000 + 500},{1 / (k + 1):.3f},"]
    (run_dir / "metrics.csv").write_text("\n".join(lines) + "\n")
    if status is not None:
        results = {"status": status, "env_steps": 1000 * (len(evals) - 1)}
        results["eval_return_mean"] = evals[-1] if status == "completed" else None
        if error:
            results["error"] = error
        (run_dir / "results.json").write_text(json.dumps(results))


def write_video(path: Path) -> None:
    """A 1-second 64x64 H.264 clip (ffmpeg from imageio-ffmpeg, a moviepy dependency)."""
    import imageio_ffmpeg

    path.parent.mkdir(parents=True, exist_ok=True)
    writer = imageio_ffmpeg.write_frames(
        str(path), (64, 64), fps=10, codec="libx264", pix_fmt_out="yuv420p",
        macro_block_size=16, ffmpeg_log_level="error",
    )  # fmt: skip
    writer.send(None)
    for i in range(10):
        frame = np.zeros((64, 64, 3), dtype=np.uint8)
        frame[:, : 6 * i + 4] = (200, 80, 40)
        writer.send(frame.tobytes())
    writer.close()


@pytest.fixture
def outputs(tmp_path: Path) -> Path:
    """4 finished runs (2 algos x 2 seeds), 1 failed run, 1 run still writing."""
    root = tmp_path / "outputs"
    for name, (algo, seed, lr, evals) in CURVES.items():
        write_run(root / SWEEP / name, algo=algo, seed=seed, lr=lr, evals=evals)
    write_run(
        root / SWEEP / "4_ddqn_seed2", algo="ddqn", seed=2, lr=1e-3, evals=[10, 20],
        status="failed", error=EVIL_ERROR,
    )  # fmt: skip
    write_run(root / LIVE, algo="dqn", seed=7, lr=2.5e-4, evals=[10, 50], status=None)
    return root


# ------------------------------------------------------------------------- pure functions
def test_flatten_and_config_diff_hand_case() -> None:
    a = {"algo": {"name": "dqn", "lr": 0.1, "opt": {}}, "tags": ["x", "y"], "seed": 0}
    b = {"algo": {"name": "dqn", "lr": 0.2, "opt": {}}, "tags": ["x", "y"], "seed": 0, "n": None}
    assert flatten_config(a) == {
        "algo.name": "dqn",
        "algo.lr": "0.1",
        "algo.opt": "{}",
        "tags": "x,y",
        "seed": "0",
    }
    assert config_diff({"a": a, "b": b}) == [("algo.lr", ["0.1", "0.2"]), ("n", [None, "null"])]
    assert config_diff({"a": a}) == []


def test_index_statuses_filters_and_live_changes(outputs: Path) -> None:
    now = [2_000_000_000.0]
    index = RunIndex(outputs, running_window_s=60, clock=lambda: now[0])
    assert index.refresh() and index.version == 1
    assert not index.refresh() and index.version == 1  # nothing changed on disk
    by_id = {e.id: e for e in index.entries()}
    assert len(by_id) == 6
    live = by_id[LIVE]
    assert live.status == "unknown"  # files are older than the window (fake clock far ahead)
    now[0] = live.updated + 10
    assert index.refresh() and index.get(LIVE).status == "running"
    assert by_id[f"{SWEEP}/4_ddqn_seed2"].row()["error"] == EVIL_ERROR
    assert index.get(LIVE).row()["env_steps"] == 1500
    options = index.filter_options()
    assert options["algo"] == ["ddqn", "dqn"] and options["seed"] == ["0", "1", "2", "7"]
    assert options["status"] == ["completed", "failed", "running"]
    dqn_done = {"algo": ["dqn"], "status": ["completed"]}
    assert [r["id"] for r in index.rows(dqn_done)] == [
        f"{SWEEP}/0_dqn_seed0",
        f"{SWEEP}/1_dqn_seed1",
    ]
    assert len(index.rows({"tags": ["ddqn"], "seed": ["1", "2"]})) == 2
    assert not matches_filters(live, {"env": ["Acrobot-v1"]})
    # the run writes one more evaluation: the index notices and the row follows
    with (outputs / LIVE / "metrics.csv").open("a") as handle:
        handle.write("2000,,90\n")
    version = index.version
    assert index.refresh() and index.version == version + 1
    assert index.get(LIVE).row()["eval_return"] == 90


def test_curves_iqm_and_bands(outputs: Path) -> None:
    index = RunIndex(outputs, reps=200)
    index.refresh()
    ids = [f"{SWEEP}/{name}" for name in CURVES] + [LIVE]
    assert default_metric(index.metrics(ids)) == "eval/return_mean"
    groups = index.curves(ids, metric="eval/return_mean", keys=["algo.name"])
    assert [g.label for g in groups] == ["ddqn", "dqn"]
    ddqn, dqn = groups
    assert len(ddqn.runs) == 2 and len(dqn.runs) == 3
    # ddqn: both runs share steps 0..5000; IQM of two values is their mean
    assert ddqn.steps is not None and ddqn.center is not None
    np.testing.assert_array_equal(ddqn.steps, np.arange(6) * 1000.0)
    expected = (np.array(CURVES["2_ddqn_seed0"][3]) + np.array(CURVES["3_ddqn_seed1"][3])) / 2
    np.testing.assert_allclose(ddqn.center, expected)
    matrix = np.array([CURVES["2_ddqn_seed0"][3], CURVES["3_ddqn_seed1"][3]], dtype=float)
    center, lo, hi = iqm_curve(matrix, reps=200, seed=0)
    np.testing.assert_allclose(ddqn.center, center)
    np.testing.assert_allclose(ddqn.lo, lo)
    np.testing.assert_allclose(ddqn.hi, hi)
    assert np.all(ddqn.lo <= ddqn.center) and np.all(ddqn.center <= ddqn.hi)
    # dqn: the live run reached step 1000 only -> the aggregate stops there (no extrapolation)
    assert dqn.steps is not None and dqn.center is not None
    np.testing.assert_array_equal(dqn.steps, [0.0, 1000.0])
    at_1000 = [CURVES["0_dqn_seed0"][3][1], CURVES["1_dqn_seed1"][3][1], 50]
    assert dqn.center[1] == pytest.approx(scipy.stats.trim_mean(at_1000, 0.25))
    # by default the same: algo.lr and tags differ too, but follow the algo
    assert index.grouping(ids).shown == ("algo.name",)
    default = index.curves(ids, metric="eval/return_mean")
    assert [(g.label, len(g.runs)) for g in default] == [("ddqn", 2), ("dqn", 3)]
    # a group of one run has its curve but no aggregate
    (single,) = index.curves([LIVE], metric="eval/return_mean", keys=["algo.name"])
    assert single.center is None and len(single.runs) == 1
    fig = figure(groups, metric="eval/return_mean")
    names = [t.name for t in fig.data]
    assert "ddqn IQM (n=2)" in names and "dqn IQM (n=3)" in names
    assert sum(n.startswith("dqn seed") for n in names) == 3
    no_seeds = figure(groups, metric="m", show_seeds=False)
    assert not any("seed" in t.name for t in no_seeds.data)


DOUBLE_SWEEP = "multirun/2026-02-02/10-00-00"


def test_default_curves_are_the_swept_keys(tmp_path: Path) -> None:
    """Ticking a sweep ``algo.double=true,false seed=0,1,2`` plots two curves, not one."""
    root = tmp_path / "outputs"
    ids = []
    for job, (double, seed) in enumerate((d, s) for d in (True, False) for s in range(3)):
        name = f"{job}_dqn-CartPole-v1_algo.double_{str(double).lower()}_seed{seed}"
        offset = 100.0 if double else 0.0
        evals = [10.0 + seed, 100.0 + offset + seed, 200.0 + offset + seed]
        write_run(root / DOUBLE_SWEEP / name, algo="dqn", seed=seed, lr=1e-3, evals=evals,
                  double=double)  # fmt: skip
        ids.append(f"{DOUBLE_SWEEP}/{name}")
    index = RunIndex(root, reps=100)
    index.refresh()
    grouping = index.grouping(ids)
    assert grouping.default and grouping.shown == ("algo.double",)
    groups = index.curves(ids, metric="eval/return_mean")
    assert [g.label for g in groups] == ["algo.double=false", "algo.double=true"]
    for group, offset in zip(groups, (0.0, 100.0), strict=True):
        assert sorted(seed for _, seed, _, _ in group.runs) == [0, 1, 2]
        assert group.center is not None
        np.testing.assert_allclose(group.center, [11.0, 101.0 + offset, 201.0 + offset])
    names = {t.name for t in figure(groups, metric="eval/return_mean").data}
    assert {"algo.double=false IQM (n=3)", "algo.double=true IQM (n=3)"} <= names
    # keys named in the page (or by --group-by) win: one curve over the six runs
    (merged,) = index.curves(ids, metric="eval/return_mean", keys=["algo.name"])
    assert merged.label == "dqn" and len(merged.runs) == 6
    (one,) = index.curves(ids[:1], metric="eval/return_mean", keys=["algo.double", "algo.lr"])
    assert one.label == "algo.double=true, algo.lr=0.001"


def test_cli_group_by_sets_the_initial_keys(outputs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dash import Dash

    apps: list[Dash] = []
    monkeypatch.setattr(Dash, "run", lambda self, **kw: apps.append(self))

    def group_keys(app: Dash) -> Any:
        box = next(c for c in app.layout._traverse() if getattr(c, "id", None) == "group-keys")
        return box.value

    assert main([str(outputs), "--refresh", "0"]) == 0
    assert group_keys(apps[-1]) == []  # empty: the keys that differ between ticked runs
    assert main([str(outputs), "--refresh", "0", "--group-by", "algo.lr, seed"]) == 0
    assert group_keys(apps[-1]) == ["algo.lr", "seed"]
    assert main([str(outputs), "--group-by", ","]) == 2


def test_media_route_serves_listed_videos_only(outputs: Path) -> None:
    video = outputs / SWEEP / "0_dqn_seed0" / "videos" / "eval_step5000.mp4"
    write_video(video)
    (outputs / "secret.txt").write_text("not a video")
    index = RunIndex(outputs)
    app = create_app(index, refresh_s=0)
    entry = index.get(f"{SWEEP}/0_dqn_seed0")
    assert entry is not None and entry.videos == [video]
    client = app.server.test_client()
    url = f"{MEDIA_ROUTE}/{entry.token}/eval_step5000.mp4"
    full = client.get(url)
    assert full.status_code == 200 and full.mimetype == "video/mp4"
    assert full.data == video.read_bytes()
    part = client.get(url, headers={"Range": "bytes=0-99"})  # browsers seek with ranges
    assert part.status_code == 206 and len(part.data) == 100
    for bad in (
        f"{MEDIA_ROUTE}/{entry.token}/metrics.csv",
        f"{MEDIA_ROUTE}/{entry.token}/..",
        f"{MEDIA_ROUTE}/0000000000000000/eval_step5000.mp4",
    ):
        assert client.get(bad).status_code == 404, bad
    # an encoded path does not match the route at all (Dash answers with its page)
    escape = client.get(f"{MEDIA_ROUTE}/{entry.token}/..%2F..%2F..%2Fsecret.txt")
    assert b"not a video" not in escape.data and escape.mimetype != "video/mp4"


def test_cli_binds_loopback_only_and_rejects_bad_input(
    outputs: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from dash import Dash

    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(Dash, "run", lambda self, **kw: calls.append(kw))
    assert main([str(outputs), "--port", "8123", "--refresh", "2"]) == 0
    assert calls == [{"host": "127.0.0.1", "port": 8123, "debug": False}] and HOST == "127.0.0.1"
    assert "6 runs" in capsys.readouterr().out
    for argv, message in (
        ([str(outputs / "nope")], "no such directory"),
        ([str(outputs), "--port", "70000"], "--port=70000"),
        ([str(outputs), "--reps", "0"], "--reps=0"),
        ([str(outputs), "--port", "x"], "invalid int value"),
    ):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and message in err, err


# ------------------------------------------------------------------------- real browser
def chromium() -> str:
    path = shutil.which("chromium")
    try:
        import playwright  # noqa: F401
    except ImportError:
        path = None
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("CI must run the browser test: install playwright and Debian's chromium")
        pytest.skip("needs playwright (pip) and chromium (apt-get install chromium)")
    return path


@pytest.fixture
def served(outputs: Path) -> Iterator[str]:
    """The app on 127.0.0.1 at a free port, rescanning every second."""
    from werkzeug.serving import make_server

    write_video(outputs / SWEEP / "0_dqn_seed0" / "videos" / "eval_step5000.mp4")
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    app = create_app(RunIndex(outputs, reps=200), refresh_s=1.0)
    server = make_server(HOST, 0, app.server, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://{HOST}:{server.server_port}/"
    server.shutdown()
    thread.join(timeout=10)


TRACES = """() => {
  const g = document.querySelector('#curves .js-plotly-plot');
  return g && g.data ? g.data.map(t => [t.name, Math.max(...t.x)]) : [];
}"""


def test_page_in_headless_chromium(served: str, outputs: Path) -> None:
    from playwright.sync_api import sync_playwright

    args = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip
    foreign: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium(), args=args)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(15_000)
        page.on("request", lambda r: None if r.url.startswith(served) else foreign.append(r.url))
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(served)

        rows = ".ag-center-cols-container .ag-row"
        page.wait_for_function(f"() => document.querySelectorAll('{rows}').length === 6")
        # the failed run's error is shown as text, never as markup
        assert page.locator(".ag-cell", has_text=EVIL_ERROR).count() == 1
        assert page.locator(".ag-cell b").count() == 0

        # filter algo=dqn: the two dqn seeds and the live dqn run remain
        page.click("#filter-algo")
        page.get_by_role("option", name="dqn", exact=True).click()
        page.keyboard.press("Escape")
        page.wait_for_function(f"() => document.querySelectorAll('{rows}').length === 3")
        for name in ("0_dqn_seed0", "1_dqn_seed1"):
            page.locator(f'.ag-row[row-id="{SWEEP}/{name}"] .ag-selection-checkbox input').click()
        page.wait_for_function(f"() => ({TRACES})().some(t => t[0] === 'dqn IQM (n=2)')")
        traces = dict(page.evaluate(TRACES))
        assert {"dqn IQM (n=2)", "dqn 95% CI", "dqn seed 0", "dqn seed 1"} == set(traces)
        assert traces["dqn IQM (n=2)"] == 5000
        assert page.locator("#curves .legendtext", has_text="dqn IQM (n=2)").count() == 1

        # config diff of the two ticked runs: only the seed differs
        diff = page.locator("#config-diff-table tbody tr")
        assert diff.count() == 1 and diff.first.inner_text().split() == ["seed", "0", "1"]

        # the eval video plays inline (metadata loaded through the media route)
        # (read the duration in the same call that sees the metadata: the 1 s live rescan
        # may re-render the element in between, and a fresh element reads NaN)
        duration = page.wait_for_function(
            """() => { const v = document.querySelector('#videos video');
                       return v && v.readyState >= 1 && v.duration > 0 ? v.duration : 0; }"""
        ).json_value()
        assert duration > 0

        # clearing the filter keeps the ticks; ticking the live run adds its curve
        page.click("#filter-algo")
        page.get_by_role("option", name="dqn", exact=True).click()
        page.keyboard.press("Escape")
        page.wait_for_function(f"() => document.querySelectorAll('{rows}').length === 6")
        assert page.locator(".ag-row-selected").count() == 2
        page.locator(f'.ag-row[row-id="{LIVE}"] .ag-selection-checkbox input').click()
        page.wait_for_function(f"() => ({TRACES})().some(t => t[0] === 'dqn IQM (n=3)')")
        assert dict(page.evaluate(TRACES))["dqn seed 7"] == 1000

        # live refresh: the run writes a new evaluation, the page follows without a reload
        with (outputs / LIVE / "metrics.csv").open("a") as handle:
            handle.write("2000,,90\n3000,,150\n")
        page.wait_for_function(
            f"() => ({TRACES})().some(t => t[0] === 'dqn seed 7' && t[1] === 3000)"
        )
        page.wait_for_function(
            f'() => document.querySelector(\'{rows}[row-id="{LIVE}"] [col-id="env_steps"]\')'
            "?.innerText === '3000'"
        )
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOT), full_page=True)
        browser.close()
    assert foreign == [], foreign  # everything is served locally: works offline
    assert errors == []
    assert SCREENSHOT.stat().st_size > 10_000


def test_a_torn_last_line_is_not_read(outputs: Path) -> None:
    """A run caught mid-append: the incomplete last line is left out until it is complete."""
    index = RunIndex(outputs)
    index.refresh()
    metrics = outputs / LIVE / "metrics.csv"
    with metrics.open("a") as handle:
        handle.write("2000,,15")  # "150\n" not written yet
    index.refresh()
    assert index.get(LIVE).row()["eval_return"] == 50  # still the last complete evaluation
    with metrics.open("a") as handle:
        handle.write("0\n")
    index.refresh()
    assert index.get(LIVE).row()["eval_return"] == 150
