"""``rlbench``: the Hydra entry point and the ONE place that instantiates config.

rlbench algo=dqn env=cartpole seed=3
rlbench experiment=dqn_cartpole
rlbench resume=outputs/dqn-CartPole-v1/2026-11-25/16-00-00_seed0 total_env_steps=200000
"""

from __future__ import annotations

import atexit
import gc
import importlib.util
import json
import logging
import os
import re
import signal
import sys
import time
import traceback
import warnings
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from rlbench.config import register_configs, validate
from rlbench.errors import CheckpointError, ConfigError, NonFiniteLossError, RLBenchError


def find_conf_dir() -> Path:
    """The folder of ``train.yaml`` and the group folders: ``rlbench.conf``, which is the
    top-level ``conf/`` of a checkout (editable install) or its copy in an installed wheel;
    ``conf/`` beside ``src/`` when the package is imported from a bare checkout."""
    spec = importlib.util.find_spec("rlbench.conf")
    if spec is not None and spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations)))
    return Path(__file__).resolve().parents[2] / "conf"


CONF_DIR = find_conf_dir()
GROUPS = ("algo", "env", "network", "buffer", "sampler", "trainer", "logger", "experiment")

register_configs()
if not OmegaConf.has_resolver("slug"):
    OmegaConf.register_new_resolver("slug", lambda s: re.sub(r"[^A-Za-z0-9_.-]+", "_", str(s)))

log = logging.getLogger("rlbench")


def write_results(run_dir: Path, results: dict[str, Any]) -> None:
    """Atomically write ``results.json``."""
    tmp = run_dir / ".results.json.tmp"
    tmp.write_text(json.dumps(results, indent=2) + "\n")
    os.replace(tmp, run_dir / "results.json")


def resume_config(cfg: DictConfig, run_dir: Path, overrides: list[str]) -> DictConfig:
    """The saved config of ``run_dir`` with value overrides (e.g. ``total_env_steps``) applied.

    Group choices (``algo=...``) cannot change on resume: the checkpoint would not fit.
    """
    saved_path = run_dir / ".hydra" / "config.yaml"
    if not saved_path.is_file():
        raise CheckpointError(f"resume={run_dir}: no .hydra/config.yaml there (not a run dir)")
    saved = OmegaConf.load(saved_path)
    assert isinstance(saved, DictConfig)
    values = [o for o in overrides if not o.startswith("resume=")]
    for o in values:
        key = o.split("=", 1)[0].lstrip("+~")
        if key in GROUPS:
            raise ConfigError(
                f"resume: cannot change config group '{o}'; only values such as "
                "total_env_steps=N or trainer.eval_every=N"
            )
    OmegaConf.set_struct(saved, True)
    try:
        merged = OmegaConf.merge(saved, OmegaConf.from_dotlist(values))
    except Exception as e:
        raise ConfigError(f"resume: bad override in {values}: {str(e).splitlines()[0]}") from None
    assert isinstance(merged, DictConfig)
    merged.resume = str(run_dir)
    return merged


def save_resumed_config(cfg: DictConfig, run_dir: Path) -> None:
    """Record value overrides given on resume in ``.hydra/config.yaml`` (atomically)."""
    path = run_dir / ".hydra" / "config.yaml"
    updated = OmegaConf.to_yaml(OmegaConf.merge(cfg, {"resume": None}))
    if path.read_text() != updated:
        tmp = path.with_suffix(".yaml.tmp")
        tmp.write_text(updated)
        os.replace(tmp, path)


def import_training_stack() -> None:
    """Import torch and Lightning with the cyclic garbage collector paused, and keep it off
    the objects they build, here and at exit.

    The two imports create some 400k long-lived objects. The collector made about seven full
    passes over them while importing (0.6 s of a 3 s import on the dev machine) and made
    another at interpreter exit (about 1 s). ``gc.freeze`` moves everything alive to the
    permanent generation, which collections skip: once after the imports, and once more at
    exit, for what the run itself built. Outputs never rely on the collector: files are
    closed by ``with`` blocks and the loggers' ``finalize``, which run before exit.
    """
    if "lightning" in sys.modules:
        return
    enabled = gc.isenabled()
    gc.disable()
    try:
        import lightning  # noqa: F401
        import torch  # noqa: F401
    finally:
        if enabled:
            gc.enable()
    gc.freeze()
    atexit.register(gc.freeze)  # before the interpreter's final collections at exit


def quiet_lightning() -> None:
    """Silence Lightning's start-up banner and its notes on the ``dataloader_iter`` flavour we
    use on purpose (no prefetch). Called after ``import lightning``, which sets its levels."""
    for name in ("lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    for pattern in (".*dataloader_iter.*", ".*isinstance\\(treespec, LeafSpec\\).*"):
        warnings.filterwarnings("ignore", message=pattern)


def _instantiate(node: Any, **kwargs: Any) -> Any:
    """``hydra.utils.instantiate`` that lets our one-line errors through unwrapped."""
    from hydra.errors import InstantiationException

    try:
        return instantiate(node, **kwargs)
    except InstantiationException as e:
        if isinstance(e.__cause__, RLBenchError):
            raise e.__cause__ from None
        raise


def algo_parts(module_cls: type, cfg: DictConfig) -> dict[str, Any]:
    """The shared config groups an algorithm's constructor asks for by name: ``network``
    (the encoder partial, its Q-head options kept on it) and ``sampler`` (Q-learning's
    action sampler). An algorithm without such a parameter does not get the group. A sampler
    whose constructor takes ``total_env_steps`` gets the run's (``sampler.decay_fraction``)."""
    import inspect

    from rlbench.networks.heads import split_head_options

    params = inspect.signature(module_cls).parameters
    parts: dict[str, Any] = {}
    if "network" in params:  # the head options ride on the partial, not into the encoder
        parts["network"], _ = split_head_options(_instantiate(cfg.network, _convert_="all"))
    if "sampler" in params:
        sampler_cls = hydra.utils.get_class(cfg.sampler._target_)
        run = {"total_env_steps": cfg.total_env_steps}
        takes = inspect.signature(sampler_cls).parameters
        parts["sampler"] = _instantiate(cfg.sampler, **{k: v for k, v in run.items() if k in takes})
    return parts


def build_module(cfg: DictConfig, env: Any) -> Any:
    """The algorithm of ``cfg.algo``, built for ``env``'s spaces."""
    module_cls = hydra.utils.get_class(cfg.algo._target_)
    module = _instantiate(cfg.algo, seed=cfg.seed, _convert_="all", **algo_parts(module_cls, cfg))
    module.build_for(*env.spaces())
    return module


def build(cfg: DictConfig, run_dir: Path, *, resume_step: int | None) -> tuple[Any, Any, Any]:
    """Instantiate module, DataModule and Trainer from a composed config."""
    import lightning as L
    import torch

    from rlbench.callbacks import CheckpointCallback, EnvStepProgressBar, EvalCallback, MetricsFlush
    from rlbench.data import datamodule_for
    from rlbench.logging import AtomicCheckpointIO, EnvStepCSVLogger

    quiet_lightning()
    torch.set_num_threads(cfg.trainer.torch_threads)
    # numpy's BLAS too (numpy_forward acting, batched value passes): its default thread pool
    # made a 516x64 @ 64x64 matmul 60x slower on the shared 2-core machine (4.6 ms vs 75 us)
    from threadpoolctl import threadpool_limits

    threadpool_limits(cfg.trainer.torch_threads, user_api="blas")
    L.seed_everything(cfg.seed, workers=False, verbose=False)

    env = _instantiate(cfg.env, _convert_="all")
    module = build_module(cfg, env)
    # the algorithm's data spec picks the DataModule (and says whether the buffer is used)
    datamodule = datamodule_for(
        module,
        env=env,
        buffer=_instantiate(cfg.buffer, _convert_="all"),
        seed=cfg.seed,
        total_env_steps=cfg.total_env_steps,
    )

    csv_logger = EnvStepCSVLogger(run_dir / "metrics.csv")
    if resume_step is not None:
        csv_logger.truncate_after(resume_step)
    loggers: list[Any] = [csv_logger]
    if cfg.logger.get("_target_"):
        extra: dict[str, Any] = {"save_dir": str(run_dir)}
        if resume_step is not None and "TensorBoard" in cfg.logger._target_:
            extra["purge_step"] = resume_step + 1
        loggers.append(_instantiate(cfg.logger, **extra))

    # evaluation envs: training-only options off, statistics (MuJoCo obs moments) from the
    # DataModule's current training envs
    from rlbench.callbacks.checkpoint import BEST_CHECKPOINT
    from rlbench.callbacks.evaluation import TrainingEnvs

    training_envs = TrainingEnvs(datamodule)
    eval_env = env.for_evaluation(training_envs=training_envs)
    keep_best = OmegaConf.select(cfg, "trainer.keep_best", default=True)  # older runs: no key
    callbacks: list[Any] = [
        EvalCallback(
            env=eval_env,
            every=cfg.trainer.eval_every,
            episodes=cfg.trainer.eval_episodes,
            seed=cfg.seed,
            stop_at_return=cfg.trainer.stop_at_eval_return,
            deterministic=cfg.trainer.eval_deterministic,
            best_path=run_dir / "checkpoints" / BEST_CHECKPOINT if keep_best else None,
            training_envs=training_envs,
        ),
        MetricsFlush(every=cfg.trainer.log_every),
        CheckpointCallback(dirpath=run_dir / "checkpoints", every=cfg.trainer.checkpoint_every),
    ]
    if cfg.video.enabled:
        from rlbench.callbacks.video import VideoCallback

        callbacks.append(
            VideoCallback(
                env=eval_env,
                dirpath=run_dir / "videos",
                every=cfg.video.every,
                episodes=cfg.video.episodes,
                seed=cfg.seed,
                max_steps=cfg.video.max_steps,
                tensorboard=cfg.video.tensorboard,
                deterministic=cfg.trainer.eval_deterministic,
            )
        )
    if cfg.trainer.progress_bar:
        callbacks.append(EnvStepProgressBar(total=cfg.total_env_steps))

    trainer = L.Trainer(
        accelerator=cfg.trainer.accelerator,
        devices=1,
        max_epochs=-1,
        logger=loggers,
        callbacks=callbacks,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        plugins=[AtomicCheckpointIO()],
        default_root_dir=str(run_dir),
    )
    return module, datamodule, trainer


def train(cfg: DictConfig, *, run_dir: Path) -> dict[str, Any]:
    """Train one run into ``run_dir``; returns the ``results.json`` content.

    Raises ``RLBenchError`` subclasses for user errors (config, checkpoint, non-finite loss).
    """
    import_training_stack()
    from rlbench.logging import load_checkpoint

    start = time.time()
    validate(cfg)
    ckpt_path: Path | None = None
    resume_step: int | None = None
    if cfg.resume:
        ckpt_path = run_dir / "checkpoints" / "last.ckpt"
        ckpt = load_checkpoint(ckpt_path)
        data_state = next(
            (v for k, v in ckpt.items() if k.endswith("DataModule") and isinstance(v, dict)), None
        )
        if not isinstance(data_state, dict) or "env_steps" not in data_state:
            raise CheckpointError(f"corrupt checkpoint {ckpt_path}: no data-module state")
        resume_step = int(data_state["env_steps"])
        del ckpt
        save_resumed_config(cfg, run_dir)
    elif (run_dir / "checkpoints" / "last.ckpt").exists() or (run_dir / "results.json").exists():
        raise ConfigError(
            f"run dir {run_dir} already holds a run; continue it with resume={run_dir} "
            "or choose another hydra.run.dir"
        )
    module, datamodule, trainer = build(cfg, run_dir, resume_step=resume_step)
    trainer.fit(module, datamodule=datamodule, ckpt_path=str(ckpt_path) if ckpt_path else None)
    if ckpt_path is not None and not datamodule.loaded_state:
        raise CheckpointError(f"{ckpt_path}: the data-module state was not restored")
    ckpt_cb = next(cb for cb in trainer.callbacks if type(cb).__name__ == "CheckpointCallback")
    eval_cb = next(cb for cb in trainer.callbacks if type(cb).__name__ == "EvalCallback")
    last = eval_cb.last or {}
    best = eval_cb.best or {}
    stopped_by = {"signal": (ckpt_cb.stop_signal or signal.SIGINT).name}
    return {
        "status": "interrupted" if ckpt_cb.interrupted else "completed",
        **(stopped_by if ckpt_cb.interrupted else {}),
        "env_steps": datamodule.env_steps,
        "eval_return_mean": last.get("eval/return_mean"),
        "eval_return_std": last.get("eval/return_std"),
        "eval_episodes": int(last.get("eval/episodes", 0)),
        "eval_deterministic": bool(cfg.trainer.eval_deterministic),
        # the best evaluation so far; its weights are checkpoints/best.ckpt (trainer.keep_best)
        "best_eval_step": int(best["env_step"]) if best else None,
        "best_eval_return_mean": best.get("eval/return_mean"),
        "best_checkpoint": (
            f"checkpoints/{eval_cb.best_path.name}"
            if best and eval_cb.best_path is not None
            else None
        ),
        "wall_time_s": time.time() - start,
    }


#: In a submitit job's run dir: the id of the job that started the run (see ``requeued``).
JOB_ID_FILE = ".submitit_job_id"


def submitit_job_id() -> str | None:
    """This process's submitit job id (stable across requeues), or ``None`` outside one."""
    if not os.environ.get("SUBMITIT_EXECUTOR"):
        return None
    try:
        import submitit

        return str(submitit.JobEnvironment().job_id)
    except Exception:  # no submitit, or an environment it does not know
        return None


def requeued(run_dir: Path, job_id: str | None) -> bool:
    """Whether this is a requeued submitit job continuing its own run: ``run_dir`` holds a
    checkpoint of a run this same job (by id) started. A new job in a dir that holds a run
    is refused as outside submitit."""
    if job_id is None or not (run_dir / "checkpoints" / "last.ckpt").is_file():
        return False
    try:
        return (run_dir / JOB_ID_FILE).read_text().strip() == job_id
    except OSError:
        return False


def _saved_status(run_dir: Path) -> str | None:
    try:
        return str(json.loads((run_dir / "results.json").read_text())["status"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def run(cfg: DictConfig) -> int:
    """Run the composed config in Hydra's output dir; returns a process exit code: 0, 1
    (failed), 2 (config or checkpoint error), 128 + the signal that interrupted the run
    (130 Ctrl-C, 143 SIGTERM)."""
    hc = HydraConfig.get()
    run_dir = Path(hc.runtime.output_dir)
    start = time.time()
    # never overwrite what a run already saved there with the record of a refused start
    keep_results = bool(cfg.resume) or any(
        (run_dir / name).exists() for name in ("results.json", "checkpoints/last.ckpt")
    )
    job_id = submitit_job_id()
    try:
        if not cfg.resume and requeued(run_dir, job_id):
            if _saved_status(run_dir) == "completed":  # stopped after the end: nothing to do
                return 0
            log.info("requeued submitit job %s: continuing the run in %s", job_id, run_dir)
            cfg = resume_config(cfg, run_dir, [])
        elif cfg.resume:
            cfg = resume_config(cfg, run_dir, list(hc.overrides.task))
        elif job_id is not None and not (run_dir / "checkpoints" / "last.ckpt").exists():
            (run_dir / JOB_ID_FILE).write_text(job_id + "\n")
        results = train(cfg, run_dir=run_dir)
    except (ConfigError, CheckpointError) as e:
        print(f"error: {e}", file=sys.stderr)
        if not keep_results:
            write_results(run_dir, _failed(e, start))
        return 2
    except NonFiniteLossError as e:
        print(f"error: {e}", file=sys.stderr)
        write_results(run_dir, _failed(e, start))
        return 1
    except Exception as e:  # a crash in one run of a sweep must not stop the sweep
        traceback.print_exc()
        write_results(run_dir, _failed(e, start))
        return 1
    write_results(run_dir, results)
    if results["status"] == "interrupted":
        print(
            f"interrupted ({results['signal']}) at env step {results['env_steps']}; "
            f"continue with: rlbench resume={run_dir}",
            file=sys.stderr,
        )
        return 128 + signal.Signals[results["signal"]]
    log.info("results: %s", json.dumps(results))
    return 0


def _failed(e: BaseException, start: float) -> dict[str, Any]:
    return {
        "status": "failed",
        "error": f"{type(e).__name__}: {e}" if not isinstance(e, RLBenchError) else str(e),
        "env_steps": 0,
        "eval_return_mean": None,
        "eval_return_std": None,
        "eval_episodes": 0,
        "wall_time_s": time.time() - start,
    }


def finish_wandb(*, exit_code: int) -> None:
    """End this job's W&B run (``logger=wandb``), marking it failed for a non-zero code: a
    sweep's next job in the same process (joblib reuses workers) would otherwise log into it,
    since ``WandbLogger`` adopts an active ``wandb.run``."""
    wandb = sys.modules.get("wandb")
    if wandb is not None and getattr(wandb, "run", None) is not None:
        wandb.finish(exit_code=exit_code)


def requeue_if_preempted(code: int) -> None:
    """Hand a submitit job that its preemption signal stopped (``code`` 128 + that signal;
    checkpoint and ``results.json`` already written) to submitit: the signal goes again,
    now to submitit's handler, which pickles the job again (hydra-submitit-launcher's
    ``checkpoint()``: same job, same overrides, same run dir), requeues it and exits. The
    requeued job continues the run (``requeued``)."""
    if code <= 128 or not os.environ.get("SUBMITIT_EXECUTOR"):
        return
    from rlbench.callbacks.checkpoint import preemption_signal

    sig = preemption_signal()
    if sig is not None and code == 128 + sig and callable(signal.getsignal(sig)):
        signal.raise_signal(sig)


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="train")
def _hydra_main(cfg: DictConfig) -> int:
    code = run(cfg)
    finish_wandb(exit_code=code)
    requeue_if_preempted(code)
    if HydraConfig.get().mode != RunMode.MULTIRUN and code != 0:
        sys.exit(code)
    return code


def _rewrite_resume_args(argv: list[str]) -> list[str]:
    """``resume=DIR`` continues DIR in place: Hydra must use it as its run dir and must not
    overwrite its ``.hydra/`` with a freshly composed config."""
    resume = [a for a in argv if a.startswith("resume=")]
    if not resume or resume[-1] in ("resume=", "resume=null"):
        return argv
    if any(a in ("-m", "--multirun") for a in argv):
        raise ConfigError("resume=DIR continues one run; it cannot be combined with -m")
    run_dir = Path(resume[-1].split("=", 1)[1]).expanduser().resolve()
    if not run_dir.is_dir():
        raise CheckpointError(f"resume={run_dir}: no such run directory")
    rest = [a for a in argv if not a.startswith("resume=")]
    return [*rest, f"resume={run_dir}", f"hydra.run.dir={run_dir}", "hydra.output_subdir=null"]


def main() -> None:
    """Console-script entry point."""
    try:
        sys.argv = [sys.argv[0], *_rewrite_resume_args(sys.argv[1:])]
    except RLBenchError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    _hydra_main()


if __name__ == "__main__":
    main()
