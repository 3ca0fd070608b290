"""``qbench tune``: equal-budget Optuna tuning of every method of a suite (:func:`tune_suite`).

One study per (suite, method, arch, bits, policy), named ``<suite>/<method>/<arch>/<bits>/<policy>`` (e.g.
``quickstart/bcgd/lenet5/W1A4/fp``). Its search space is the method's own plus the shared recipe keys the suite opens
in ``tune.recipe_space`` (:mod:`qbench.tune.space`). Every method gets the same budget: the suite's ``tune.n_trials``
finished (complete or pruned) trials of ``tune.epochs`` epochs each, with the same pruner and a seeded TPE sampler
(:mod:`qbench.tune.worker`). The objective is the **validation** top-1 after the trial's last epoch (the test split is
never read); a trial that diverges scores 0.0, the worst accuracy. Trial 0 of every study is the method's defaults.

The studies live in the suite's journal file or an RDB storage (:mod:`qbench.tune.storage`). Per trial:
``<results_dir>/<suite>/tuning/<slug>/trial_<number>/`` holds its config.yaml and metrics.jsonl (deeper than the
suite's run directories, so the leaderboard never reads them). After each study a summary is written to
``<results_dir>/<suite>/tuning/<slug>.json`` (:mod:`qbench.tune.summary`). ``qbench run suite=S tuned=true`` trains
each cell with its study's best parameters on the suite's full schedule (:func:`qbench.tune.tuned_overrides`).

``tune.recipe_space`` format (dotted recipe key → one of)::

    train.lr: [0.005, 0.2, log]            # float range, log scale
    train.momentum: [0.8, 0.99, linear]    # float range, linear scale
    data.batch_size: [32, 256, log]        # both ends integers: an integer range
    train.optimizer: [sgd, adamw]          # any other list: categorical choices
    train.weight_decay: {choices: [0.0, 1e-4]}   # explicit choices (needed for two numbers)
    train.gamma: {low: 0.05, high: 0.5, log: true}
"""

from __future__ import annotations

from typing import Callable

from ..config import SuiteConfig
from ..results import ResultsLayout
from ..run.runner import load_splits
from .space import study_spaces
from .storage import dashboard_arg, is_rdb, open_storage, storage_label, storage_url
from .summary import log_table, write_summary
from .worker import Worker, load_study, prepare_study, run_workers

__all__ = ["tune_suite"]


def tune_suite(cfg: SuiteConfig, *, progress: bool = True, log: Callable[[str], None] = print) -> list[dict]:
    """Tune every (method, arch, bits, policy) of a suite; returns one summary dict per study (see
    :func:`qbench.tune.summary.study_summary`). Resumes studies that exist in the storage."""
    spaces = study_spaces(cfg)
    load_splits(cfg.data)  # a data error is one line before anything starts
    storage = open_storage(cfg, log=log)
    n_workers = int(cfg.tune.workers)
    parallel = n_workers > 1 or is_rdb(storage_url(cfg))
    log(f"tuning {len(spaces)} stud{'y' if len(spaces) == 1 else 'ies'} of suite '{cfg.name}': {cfg.tune.n_trials} "
        f"trials × {cfg.tune.epochs} epoch(s) each, pruner {cfg.tune.pruner}, TPE seed {cfg.tune.seed}, objective "
        f"val top-1; storage {storage_label(cfg)}")
    studies = {}
    for spec, space in spaces.items():
        if space.empty:
            log(f"{spec.name}: nothing to tune (method '{space.base}' has no search space and tune.recipe_space is "
                f"empty); `qbench run tuned=true` uses its defaults")
            continue
        if not space.method_params:
            log(f"{spec.name}: method '{space.base}' has no search space of its own; tuning only the shared recipe "
                f"keys {', '.join(d.key for d in space.recipe)}")
        studies[spec] = prepare_study(cfg, spec, space, storage, log=log, parallel=parallel)
    if n_workers == 1:
        worker = Worker(cfg, 0, 1, progress, log)
        worker.run_studies([(study, spec, spaces[spec]) for spec, study in studies.items()],
                           on_done=lambda study, spec: write_summary(cfg, spec, study))
    else:
        run_workers(cfg, list(studies), n_workers, progress, log)
    summaries = [write_summary(cfg, spec, load_study(cfg, spec, storage)) for spec in studies]
    log_table(summaries, log)
    log(f"summaries in {ResultsLayout(cfg.results_dir, cfg.name).tuning_dir}/<study>.json; dashboard: "
        f"optuna-dashboard {dashboard_arg(cfg)}")
    log(f"train with the best parameters: qbench run suite={cfg.name} tuned=true")
    return summaries
