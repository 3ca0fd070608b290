"""Where a suite's studies live: the journal file or an RDB storage, and the URL that names it, masked everywhere.

``tune.storage`` unset: ``$QBENCH_TUNE_STORAGE`` if set, else one journal file for all the suite's studies,
``<results_dir>/<suite>/tuning/journal.log`` (several processes on one machine append to it safely; a torn last
record is cut before anything is appended, see :mod:`qbench.tune.journal`). ``postgresql://user:pw@host/db`` (or
``mysql://``, ``sqlite:///``): an RDB storage shared by workers on many machines, with heartbeats
(``tune.heartbeat_interval``, ``tune.grace_period``); Optuna fails the trial of a worker that died and
:func:`retry_callback` re-queues it with the same parameters (at most ``tune.max_retry`` times). Any other value is the
path of a journal file.

The URL's password never leaves memory: records hold it masked (:func:`qbench.config.to_dict`), and so do logs,
summaries and error lines (:func:`qbench.config.mask_url`). A config reloaded from a record (``qbench run --from``)
therefore has a masked URL; it is refused with one line unless ``$QBENCH_TUNE_STORAGE`` gives the real one.
"""

from __future__ import annotations

import importlib.util
import os
import re
import warnings
from pathlib import Path
from typing import Any, Callable
from urllib.parse import unquote

import optuna
from optuna.exceptions import ExperimentalWarning

from ..config import SuiteConfig, mask_url, url_passwords
from ..errors import ConfigError, QbenchError
from ..results import ResultsLayout
from .journal import open_journal

__all__ = [
    "STORAGE_ENV",
    "storage_url",
    "storage_label",
    "is_rdb",
    "journal_path",
    "open_storage",
    "dashboard_arg",
    "retry_callback",
    "one_line",
]

STORAGE_ENV = "QBENCH_TUNE_STORAGE"  # the storage when tune.storage is unset (keeps a password off the command line)
_RDB_SCHEMES = ("postgresql", "postgres", "mysql", "sqlite", "mariadb", "oracle", "mssql")


def _is_masked(url: str) -> bool:
    return "***" in url and mask_url(url) == url


def storage_url(cfg: SuiteConfig) -> str | None:
    """The storage of the suite's studies as given: ``tune.storage``, else ``$QBENCH_TUNE_STORAGE``, else None (the
    suite's journal). A masked URL (a config reloaded from a record) is replaced by the variable, or refused."""
    url = cfg.tune.storage or None
    if url is None or _is_masked(url):
        url = os.environ.get(STORAGE_ENV) or url
    if url is not None and _is_masked(url):
        raise QbenchError(f"the record's storage URL is masked ({url}); pass tune.storage=<the URL with its "
                          f"password> or set {STORAGE_ENV}")
    return url


def is_rdb(url: str | None) -> bool:
    """Whether a storage URL names a database (with heartbeats) rather than a journal file."""
    return bool(url) and "://" in str(url)


def journal_path(cfg: SuiteConfig) -> Path:
    return ResultsLayout(cfg.results_dir, cfg.name).journal_path


def storage_label(cfg: SuiteConfig) -> str:
    """The storage as logs and summaries show it (password masked)."""
    url = storage_url(cfg)
    return mask_url(url) if url else str(journal_path(cfg))


def retry_callback(cfg: SuiteConfig) -> Callable:
    """Optuna's retry callback: re-queue a failed trial with its parameters, at most ``tune.max_retry`` times per
    original trial (its static helpers read a trial's retry history)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        return optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=int(cfg.tune.max_retry))


def open_storage(cfg: SuiteConfig, *, log: Callable[[str], None] = print):
    """The Optuna storage of a suite's studies (see the module doc). A URL that cannot connect raises one line with
    the password masked. Optuna's own INFO lines are silenced: qbench logs each trial itself."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = storage_url(cfg)
    if is_rdb(url):
        scheme = url.split("://", 1)[0].split("+", 1)[0].lower()
        if scheme not in _RDB_SCHEMES:
            raise ConfigError(f"unsupported tune.storage scheme '{scheme}://' in {mask_url(url)}; use a journal file "
                              f"path, postgresql://user:password@host:port/db, mysql://… or sqlite:///path.db")
        return _open_rdb(cfg, url)
    return open_journal(Path(url) if url else journal_path(cfg), log=log)


def _with_driver(url: str) -> str:
    """``postgres://`` and a bare ``postgresql://`` → the PostgreSQL driver that is installed (SQLAlchemy ≥ 2.1
    picks psycopg 3 for a bare URL; qbench's ``postgres`` extra installs psycopg2-binary)."""
    scheme, rest = url.split("://", 1)
    if scheme in ("postgres", "postgresql"):
        if importlib.util.find_spec("psycopg") is not None:
            return f"postgresql+psycopg://{rest}"
        if importlib.util.find_spec("psycopg2") is not None:
            return f"postgresql+psycopg2://{rest}"
        return f"postgresql://{rest}"
    return url


def _open_rdb(cfg: SuiteConfig, url: str):
    t = cfg.tune
    engine_kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if url.startswith("postgres"):
        engine_kwargs["connect_args"] = {"connect_timeout": 10}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ExperimentalWarning)  # the heartbeat
            return optuna.storages.RDBStorage(
                _with_driver(url), engine_kwargs=engine_kwargs, heartbeat_interval=int(t.heartbeat_interval),
                grace_period=int(t.grace_period) if t.grace_period else None,
                heartbeat_stale_trial_callback=retry_callback(cfg))
    except ImportError:
        raise QbenchError(f"tune.storage {mask_url(url)} needs a database driver: pip install psycopg2-binary "
                          f"(or qbench-bench[postgres])") from None
    except Exception as exc:  # noqa: BLE001 - sqlalchemy/driver errors of every kind: one line
        raise QbenchError(f"cannot connect to tune.storage {mask_url(url)}: {one_line(exc, url)}") from None


def dashboard_arg(cfg: SuiteConfig) -> str:
    """What to give ``optuna-dashboard`` (the password masked: the user fills it in)."""
    url = storage_url(cfg)
    if is_rdb(url):
        return mask_url(_with_driver(url))
    return str(url or journal_path(cfg))


def one_line(exc: BaseException, url: str | None = None) -> str:
    """An exception as one short line, without the password of ``url`` (a driver may echo its connection string)."""
    orig = getattr(exc, "orig", None) or exc
    text = " ".join(str(orig).split()) or type(orig).__name__
    text = re.sub(r"\(Background on this error at: [^)]*\)", "", text).strip()
    if url:
        for password in url_passwords(url):
            for form in {password, unquote(password)}:
                text = text.replace(form, "***")
    return text[:300]
