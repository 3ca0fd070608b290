"""Loading a suite: YAML + ``key=value`` overrides merged onto the schema with OmegaConf (strict keys), stages,
typed overrides, and writing a config back (``config.yaml``)."""

from __future__ import annotations

import dataclasses
import difflib
import re
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException, ValidationError

from ..errors import ConfigError
from .schema import SEEDS_AUTO, SuiteConfig
from .validate import validate

__all__ = ["load_config", "stage_configs", "with_overrides", "get_value", "list_suites", "suite_path", "to_dict",
           "to_yaml", "mask_url", "url_passwords"]

_SHORTHANDS = {"method": "methods", "arch": "model.archs", "seed": "seeds", "policy": "policies"}
_LIST_KEYS = {"methods", "model.archs", "seeds", "policies", "bits", "plugins", "loggers"}
_STAGE_FORBIDDEN = ("name", "stage", "stages", "kind", "results_dir", "shard")
_STAGE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]*$")


def suite_path(name: str, suites_dir: str | Path | None = None) -> Path:
    """Path of a suite YAML: a file path, a name in ``suites_dir``, or a suite shipped with qbench."""
    candidate = Path(name)
    if candidate.suffix in (".yaml", ".yml") and candidate.is_file():
        return candidate
    folders = [Path(suites_dir)] if suites_dir else []
    folders.append(Path(str(resources.files("qbench.suites"))))
    for folder in folders:
        for ext in (".yaml", ".yml"):
            if (folder / f"{name}{ext}").is_file():
                return folder / f"{name}{ext}"
    known = [n for n, _ in list_suites(suites_dir)]
    close = difflib.get_close_matches(str(name), known, n=3)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    raise ConfigError(f"unknown suite '{name}'{hint}; known suites: {', '.join(known)} (or give a path to a .yaml)")


def list_suites(suites_dir: str | Path | None = None) -> list[tuple[str, str]]:
    """(name, one-line description) of every suite shipped with qbench and in ``suites_dir``."""
    folders = [Path(str(resources.files("qbench.suites")))]
    if suites_dir:
        folders.insert(0, Path(suites_dir))
    found: dict[str, str] = {}
    for folder in folders:
        for path in sorted(folder.glob("*.y*ml")):
            if path.stem in found:
                continue
            try:
                desc = (yaml.safe_load(path.read_text()) or {}).get("description", "")
            except yaml.YAMLError:
                desc = "(unreadable YAML)"
            found[path.stem] = " ".join(str(desc).split())
    return sorted(found.items())


def _valid_keys(node: Any) -> list[str]:
    try:
        return sorted(str(k) for k in node.keys())
    except Exception:  # noqa: BLE001 - a leaf has no keys
        return []


def _describe_key_error(base: DictConfig, key: str) -> str:
    parts = key.split(".")
    node: Any = base
    for i, part in enumerate(parts):
        if isinstance(node, DictConfig) and part in node:
            node = node[part]
            continue
        prefix = ".".join(parts[:i])
        valid = _valid_keys(node)
        close = difflib.get_close_matches(part, valid, n=1)
        hint = f" (did you mean '{'.'.join([*parts[:i], close[0]])}'?)" if close else ""
        where = f" under '{prefix}'" if prefix else ""
        return f"unknown config key '{key}'{hint}; valid keys{where}: {', '.join(valid)}"
    return f"invalid config key '{key}'"


def _normalise_override(item: str) -> tuple[str, str]:
    if "=" not in item:
        raise ConfigError(f"bad override '{item}'; write key=value, e.g. train.epochs=3 or bits=[W1A4,W2A4]")
    key, value = item.split("=", 1)
    key = key.strip().lstrip("+")
    key = _SHORTHANDS.get(key, key)
    if key in _LIST_KEYS and not value.strip().startswith("[") and not (key == "seeds" and value.strip() == SEEDS_AUTO):
        value = f"[{value}]"
    return key, value


def _merge_checked(base: DictConfig, data: Any, source: str) -> DictConfig:
    try:
        return OmegaConf.merge(base, data)
    except (ConfigKeyError, ConfigAttributeError) as exc:
        key = getattr(exc, "full_key", None) or str(exc)
        raise ConfigError(f"{source}: {_describe_key_error(base, str(key))}") from None
    except ValidationError as exc:
        key = getattr(exc, "full_key", "?")
        raise ConfigError(f"{source}: bad value for '{key}': {str(exc).splitlines()[0]}") from None
    except OmegaConfBaseException as exc:
        raise ConfigError(f"{source}: {str(exc).splitlines()[0]}") from None


def load_config(suite: str | None = None, overrides: list[str] | tuple[str, ...] = (), *,
                from_file: str | Path | None = None, suites_dir: str | Path | None = None) -> SuiteConfig:
    """Resolve a suite (by name or path) or a saved run config, plus ``key=value`` overrides, into a validated
    :class:`SuiteConfig`.

    ``suite=NAME`` may also be given among the overrides (``qbench run suite=quickstart train.epochs=1``). With
    ``from_file`` (a run's ``config.yaml``) the result is narrowed to that run's cell whatever the overrides say, so
    ``qbench run --from`` re-runs exactly that run.
    """
    rest = []
    for item in overrides:
        if item.startswith("suite="):
            suite = item.split("=", 1)[1]
        elif item.startswith("suites_dir="):
            suites_dir = item.split("=", 1)[1]
        else:
            rest.append(item)
    cfg = OmegaConf.structured(SuiteConfig)
    saved_cell = None
    if from_file is not None:
        path = Path(from_file)
        if not path.is_file():
            raise ConfigError(f"--from: no config file at '{path}'; give a run directory's config.yaml")
        saved = _load_yaml(path)
        saved_cell = saved.pop("cell", None)  # the run's cell (run.runner.cell_config), not a config key
        cfg = _merge_checked(cfg, saved, str(path))
    elif suite is not None:
        path = suite_path(suite, suites_dir)
        data = _load_yaml(path)
        data.setdefault("name", path.stem)
        cfg = _merge_checked(cfg, data, str(path))
    elif rest:
        raise ConfigError("no suite given; add suite=<name> (see `qbench list suites`) or --from <run>/config.yaml")
    for item in rest:
        key, value = _normalise_override(item)
        parsed = OmegaConf.from_dotlist([f"{key}={value}"])
        if key.startswith("stages."):  # stages.<name>.<key>=value changes one stage only
            _override_one_stage(cfg, key, parsed, item)
            continue
        cfg = _merge_checked(cfg, parsed, f"override '{item}'")
        _override_stages(cfg, key, parsed)
    if isinstance(saved_cell, Mapping):
        _narrow_to_saved_cell(cfg, saved_cell, str(from_file))
    return _finish(cfg)


def _narrow_to_saved_cell(cfg: DictConfig, cell: Mapping, source: str) -> None:
    missing = [k for k in ("method", "arch", "bits", "policy", "seed") if k not in cell]
    if missing:
        raise ConfigError(f"{source}: its cell block lacks {', '.join(missing)}; give the config.yaml a qbench run "
                          "wrote (or copy that run's folder again)")
    cfg.methods, cfg.bits, cfg.seeds, cfg.policies = [cell["method"]], [cell["bits"]], [cell["seed"]], [cell["policy"]]
    cfg.model.archs = [cell["arch"]]


def _finish(cfg: DictConfig) -> SuiteConfig:
    """DictConfig → the typed object, normalised and validated (stages included)."""
    try:
        typed = OmegaConf.to_object(cfg)
    except OmegaConfBaseException as exc:
        raise ConfigError(str(exc).splitlines()[0]) from None
    validate(typed)
    if typed.stages:
        stage_configs(typed)  # a bad stage fails now, with the others, not after the first stage has run
    return typed


def _override_stages(cfg: DictConfig, key: str, parsed: DictConfig) -> None:
    """A command-line override wins over a stage that sets the same key too (``train.epochs=1`` shortens every stage
    of a staged suite, as it would an unstaged one)."""
    if key.startswith("stages") or not cfg.stages:
        return
    value = OmegaConf.select(parsed, key)
    for stage in cfg.stages:
        if OmegaConf.select(stage, key, default=None) is not None:
            OmegaConf.update(stage, key, value, merge=False)


def _override_one_stage(cfg: DictConfig, key: str, parsed: DictConfig, item: str) -> None:
    """``stages.continue.train.lr=1e-3``: set a key of the stage named ``continue`` (checked when stages resolve)."""
    _, name, *rest = key.split(".")
    names = [str(stage.get("name")) for stage in cfg.stages]
    if not rest:
        example = names[0] if names else "base"
        raise ConfigError(f"override '{item}': write stages.<stage name>.<key>=value, "
                          f"e.g. stages.{example}.train.lr=1e-3")
    if name not in names:
        raise ConfigError(f"override '{item}': no stage named '{name}'; this suite's stages: "
                          f"{', '.join(names) or '(none)'}")
    OmegaConf.update(cfg.stages[names.index(name)], ".".join(rest), OmegaConf.select(parsed, key), merge=True)


def stage_configs(cfg: SuiteConfig) -> list[SuiteConfig]:
    """The resolved config of each of ``cfg.stages``, in order: the suite's config with the stage's overrides merged
    on top (checked against the schema like the suite itself), ``stage`` set to the stage's name, ``stages`` empty.
    A suite without stages is its own single stage."""
    if not cfg.stages:
        return [cfg]
    out, seen = [], set()
    for index, stage in enumerate(cfg.stages):
        data = dict(_plain(stage) or {}) if isinstance(stage, (Mapping, DictConfig)) else stage
        if not isinstance(data, dict):
            raise ConfigError(f"stages[{index}] must be a mapping {{name: ..., <config keys>}}")
        name = str(data.pop("name", "") or "")
        if not _STAGE_NAME.match(name):
            raise ConfigError(f"stages[{index}] needs a name of letters, digits and '-' (got {name!r}); "
                              "e.g. name: base")
        if name in seen:
            raise ConfigError(f"stage name '{name}' is used twice; give every stage its own name")
        seen.add(name)
        bad = sorted(set(data) & set(_STAGE_FORBIDDEN))
        if bad:
            raise ConfigError(f"stage '{name}' sets {', '.join(bad)}; a stage may only change the suite's run keys "
                              "(methods, bits, model, train, ...)")
        base = OmegaConf.structured(dataclasses.replace(cfg, stages=[]))
        merged = _merge_checked(base, data, f"stage '{name}'")
        merged.stage = name
        out.append(_finish(merged))
    return out


def with_overrides(cfg: SuiteConfig, overrides: Mapping[str, Any]) -> SuiteConfig:
    """A copy of ``cfg`` with dotted keys set (``{"train.lr": 0.05, "method_hparams.bcgd.rho": 1e-4}``), checked
    and validated like a command-line override (tuned parameters, Optuna trials)."""
    node = OmegaConf.structured(cfg)
    for key, value in overrides.items():
        try:
            OmegaConf.update(node, key, value, merge=True)
        except (ConfigKeyError, ConfigAttributeError):
            raise ConfigError(_describe_key_error(node, key)) from None
        except (ValidationError, OmegaConfBaseException) as exc:
            raise ConfigError(f"bad value for '{key}': {str(exc).splitlines()[0]}") from None
    return _finish(node)


def get_value(cfg: SuiteConfig, dotted: str) -> Any:
    """The value of a dotted key (``"train.lr"``) of a typed config; a ConfigError names an unknown key."""
    node: Any = cfg
    for part in dotted.split("."):
        if isinstance(node, Mapping):
            if part not in node:
                raise ConfigError(f"unknown config key '{dotted}'")
            node = node[part]
        elif dataclasses.is_dataclass(node) and part in {f.name for f in dataclasses.fields(node)}:
            node = getattr(node, part)
        else:
            raise ConfigError(f"unknown config key '{dotted}'")
    return node


def _load_yaml(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a suite must be a YAML mapping of keys")
    return data


def _plain(value: Any) -> Any:
    return OmegaConf.to_container(value, resolve=True) if isinstance(value, (DictConfig, ListConfig)) else value




# A database password in a URL, percent-encoded or not: in the user part everything from the user name's ':' to the
# last '@' (an unencoded '/', '@' or '?' in the password is still hidden), and a query parameter (?password=, passwd,
# pwd).
_URL_PASSWORD = re.compile(r"^([A-Za-z][\w+.-]*://[^:/?#@]*):(.*)@")
_QUERY_PASSWORD = re.compile(r"([?&;](?:password|passwd|pwd)=)([^&;#]*)", re.IGNORECASE)


def mask_url(url: str) -> str:
    """``url`` with its password replaced by ``***`` (what records, logs and messages show of ``tune.storage``)."""
    masked = _URL_PASSWORD.sub(r"\1:***@", str(url), count=1)
    return _QUERY_PASSWORD.sub(r"\1***", masked)


def url_passwords(url: str) -> list[str]:
    """The passwords :func:`mask_url` hides, as written in ``url`` (to hide them in a driver's error text too)."""
    user = _URL_PASSWORD.match(str(url))
    found = [user.group(2)] if user else []
    return [p for p in found + [m.group(2) for m in _QUERY_PASSWORD.finditer(str(url))] if p]


def _mask_storage(node: Any) -> Any:
    tune = node.get("tune") if isinstance(node, Mapping) else None
    if isinstance(tune, Mapping) and tune.get("storage"):
        return {**node, "tune": {**tune, "storage": mask_url(tune["storage"])}}
    return node


def to_dict(cfg: SuiteConfig | DictConfig | Mapping) -> dict:
    """A plain nested dict (what ``config.yaml`` holds), the password of ``tune.storage`` masked (:func:`mask_url`):
    records and ``qbench show`` never hold it."""
    if dataclasses.is_dataclass(cfg):
        plain = dataclasses.asdict(cfg)
    elif isinstance(cfg, DictConfig):
        plain = OmegaConf.to_container(cfg, resolve=True)
    else:
        plain = dict(cfg)
    plain = _mask_storage(plain)
    if isinstance(plain.get("stages"), list):
        plain["stages"] = [_mask_storage(stage) for stage in plain["stages"]]
    return plain


def to_yaml(cfg: SuiteConfig | DictConfig | Mapping) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)
