"""The ``qbench`` command: run, tune, report, bench, list, show.

Everything after the subcommand that looks like ``key=value`` is a config override (``qbench run suite=quickstart
train.epochs=1 seeds=[0]``). User errors print one line and exit with status 2; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import argparse
import fnmatch
import sys
from pathlib import Path

import timm

from .bench import bench_suite
from .config import list_suites, load_config, to_yaml
from .errors import QbenchError
from .registry import get_method_class, list_methods, load_plugin
from .report import build_leaderboard, load_runs, report, report_all
from .run.distributed import is_main, session
from .run.models import ARCHS
from .run.runner import run_suite
from .theory.suite import run_theory_suite
from .tune import tune_suite, tuned_overrides

__all__ = ["main", "build_parser", "METHOD_FAMILIES"]

#: the method families of ``Method.family``, in the order ``qbench list methods`` prints them
METHOD_FAMILIES = ("baseline", "weight quantizer", "activation estimator", "update rule")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="qbench", description="Benchmark for training quantized neural networks.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for user errors too")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def with_overrides(p):
        p.add_argument("overrides", nargs="*", metavar="key=value",
                       help="suite=<name> and config overrides, e.g. train.epochs=3 bits=[W1A4] seeds=[0,1]")
        p.add_argument("--plugin", action="append", default=[], metavar="FILE.py",
                       help="load a method plugin file (repeatable); same as plugins=[FILE.py]")
        return p

    run = with_overrides(sub.add_parser("run", help="train every cell of a suite and write run records"))
    run.add_argument("--from", dest="from_file", metavar="CONFIG.yaml", help="reproduce a run from its config.yaml")
    run.add_argument("--fresh", action="store_true", help="re-run cells that are already complete (default: skip)")
    run.add_argument("--no-progress", action="store_true", help="no progress bars")

    tune = with_overrides(sub.add_parser("tune", help="equal-budget Optuna tuning of each method of a suite"))
    tune.add_argument("--no-progress", action="store_true")

    report = with_overrides(sub.add_parser("report", help="write leaderboards (md/csv/html/tex, web site) and plots"))
    report.add_argument("--where", action="append", default=[], metavar="key=value", help="filter runs")
    report.add_argument("--format", dest="formats", action="append", choices=["md", "csv", "html", "tex", "site"],
                        help="output format (repeatable; default md, csv, html, tex); site: a static web site, "
                             "index.html + site/<suite>.html, that opens from disk")
    report.add_argument("--all", dest="all_suites", action="store_true",
                        help="every suite with run records in results_dir (no suite=; results_dir=... may be given)")
    report.add_argument("--out", metavar="DIR", help="output folder (default <results_dir>/leaderboards)")
    report.add_argument("--no-plots", action="store_true")

    bench = with_overrides(sub.add_parser("bench", help="measure train/inference throughput, FP vs every method"))
    del bench

    lst = sub.add_parser("list", help="list methods, suites or models")
    lst.add_argument("what", choices=["methods", "suites", "models"])
    lst.add_argument("pattern", nargs="?", help="fnmatch filter, e.g. '*ste*'")
    lst.add_argument("--plugin", action="append", default=[], metavar="FILE.py")

    show = with_overrides(sub.add_parser("show", help="print the resolved config of a suite"))
    del show
    return parser


def _load(args):
    overrides = list(args.overrides)
    if getattr(args, "plugin", None):
        overrides.append(f"plugins=[{','.join(str(Path(p)) for p in args.plugin)}]")
    return load_config(None, overrides, from_file=getattr(args, "from_file", None))


def _cmd_run(args) -> int:
    cfg = _load(args)
    if cfg.kind == "theory":
        outcome = run_theory_suite(cfg, resume=not args.fresh)
        paths = report(cfg.name, results_dir=cfg.results_dir, formats=("md", "csv"))
        print("theory table and plots: " + ", ".join(str(p) for p in paths))
        if outcome.skipped:
            print(f"skipped {len(outcome.skipped)} complete record(s) (use --fresh to re-run them)")
        _print_summary(cfg)
        return 1 if outcome.failed else 0
    tuned_params = None
    if cfg.tuned:
        tuned_params = lambda cell: tuned_overrides(cfg, cell)  # noqa: E731
    # Under torchrun (WORLD_SIZE > 1): one process group for the suite; only rank 0 prints (run.distributed).
    with session(cfg.train.device):
        outcome = run_suite(cfg, resume=not args.fresh, progress=not args.no_progress, tuned_params=tuned_params,
                            log=print if is_main() else (lambda _msg: None))
    if not is_main():
        return 1 if outcome.failed else 0
    if outcome.skipped:
        print(f"skipped {len(outcome.skipped)} complete cell(s) (use --fresh to re-run them)")
    if outcome.locked:
        print(f"left {len(outcome.locked)} cell(s) to the other qbench process training them: "
              f"{', '.join(outcome.locked)}; run the same command again later to pick up any it does not finish")
    _print_summary(cfg)
    return 1 if outcome.failed else 0


def _print_summary(cfg) -> None:
    try:
        runs = load_runs(cfg.results_dir, cfg.name)
    except QbenchError:
        return
    board = build_leaderboard(runs, suite=cfg.name)
    print()
    what = "estimator checks (spec §8)" if board.kind == "theory" else "test top-1 (%), mean ± std over seeds"
    print(f"{cfg.name}: {what}  [results in {Path(cfg.results_dir) / cfg.name}]")
    print(board.table.to_markdown(index=False))


def _cmd_tune(args) -> int:
    cfg = _load(args)
    tune_suite(cfg, progress=not args.no_progress)
    return 0


def _cmd_report(args) -> int:
    if args.all_suites:
        return _report_all(args)
    cfg = _load(args)
    paths = report(cfg.name, results_dir=cfg.results_dir, out_dir=args.out, where=args.where or None,
                   formats=args.formats, plots=not args.no_plots)
    for p in paths:
        print(p)
    md = [p for p in paths if str(p).endswith(".md")]
    if md:
        print()
        print(Path(md[0]).read_text())
    return 0


def _report_all(args) -> int:
    settings = dict(item.partition("=")[::2] for item in args.overrides)
    if set(settings) - {"results_dir"} or args.where or args.plugin:
        raise QbenchError("qbench report --all takes no suite, filter or plugin; only results_dir=<folder>")
    paths = report_all(settings.get("results_dir", "results"), out_dir=args.out, formats=args.formats,
                       plots=not args.no_plots)
    for p in paths:
        print(p)
    index = [p for p in paths if p.name == "index.html"]
    if index:
        print(f"\nsite: {index[0]}")
    return 0


def _cmd_bench(args) -> int:
    cfg = _load(args)
    bench_suite(cfg)
    return 0


def _cmd_list(args) -> int:
    if args.what == "methods":
        for plugin in args.plugin:
            load_plugin(plugin)
        by_family: dict[str, list] = {}
        for name in list_methods(args.pattern):
            cls = get_method_class(name)
            by_family.setdefault(cls.family, []).append(cls)
        # Families in the order of spec §0 (baseline, then what a method changes: Q, the estimator, the update
        # rule); a plugin's own family name comes after them. Each method's first line cites its paper (``paper``:
        # short title + arXiv id).
        rank = {family: i for i, family in enumerate(METHOD_FAMILIES)}
        for family in sorted(by_family, key=lambda f: (rank.get(f, len(rank)), f)):
            print(f"== {family} ==")
            for cls in by_family[family]:
                print(cls.describe())
            print()
    elif args.what == "suites":
        for name, desc in list_suites():
            print(f"{name:28s} {desc}")
    else:
        for name in sorted(ARCHS):
            if not args.pattern or fnmatch.fnmatch(name, args.pattern):
                print(name)
        print(f"(plus every timm model: {len(timm.list_models())} names; `timm.list_models(pattern)`)")
    return 0


def _cmd_show(args) -> int:
    print(to_yaml(_load(args)), end="")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    # Flags and key=value overrides in any order (`qbench run suite=S --no-progress train.epochs=1`): argparse stops
    # the positional list at the first flag, so the overrides after it come back as extras.
    args, extras = parser.parse_known_args(argv)
    if extras:
        if not hasattr(args, "overrides") or any(e.startswith("-") or "=" not in e for e in extras):
            parser.error(f"unrecognized arguments: {' '.join(extras)}")
        args.overrides += extras
    handler = {"run": _cmd_run, "tune": _cmd_tune, "report": _cmd_report, "bench": _cmd_bench, "list": _cmd_list,
               "show": _cmd_show}[args.command]
    try:
        return handler(args)
    except QbenchError as exc:
        if args.debug:
            raise
        print(f"qbench: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("qbench: interrupted; re-run the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
