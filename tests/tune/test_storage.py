"""Where the studies live, and the storage URL's password: masked in records, `qbench show`, summaries, logs and
error lines; taken only from the command line, the suite or $QBENCH_TUNE_STORAGE, never from a record."""

import pytest
import yaml

from qbench.cli import main
from qbench.config import load_config, mask_url, to_dict, to_yaml, url_passwords
from qbench.errors import QbenchError
from qbench.run import runner
from qbench.tune.storage import STORAGE_ENV, open_storage, storage_label, storage_url

SECRET_URL = "postgresql://qbench:s3/cr@et@dbhost:5432/qbench?sslmode=disable&passwd=0th3r"


@pytest.mark.parametrize("url, masked, secrets", [
    ("postgresql://qbench:s3cret@host/db", "postgresql://qbench:***@host/db", ["s3cret"]),
    # an unencoded '/' or '@' in the password
    ("postgresql://qbench:s3/cr@et@host:5432/db", "postgresql://qbench:***@host:5432/db", ["s3/cr@et"]),
    # percent-encoded
    ("postgresql+psycopg2://qbench:s3%2Fcr%40et@host/db", "postgresql+psycopg2://qbench:***@host/db",
     ["s3%2Fcr%40et"]),
    # as a query parameter
    ("postgresql://qbench@host/db?password=s3cret&sslmode=require",
     "postgresql://qbench@host/db?password=***&sslmode=require", ["s3cret"]),
    ("mysql://host/db?user=qbench&passwd=s3%2Fcret", "mysql://host/db?user=qbench&passwd=***", ["s3%2Fcret"]),
    ("postgresql://host/db?PASSWORD=s3cret", "postgresql://host/db?PASSWORD=***", ["s3cret"]),
    (SECRET_URL, "postgresql://qbench:***@dbhost:5432/qbench?sslmode=disable&passwd=***", ["s3/cr@et", "0th3r"]),
    # nothing to hide
    ("postgresql://h:5/db", "postgresql://h:5/db", []),
    ("sqlite:///results/tune.db", "sqlite:///results/tune.db", []),
    ("results/quickstart/tuning/journal.log", "results/quickstart/tuning/journal.log", []),
])
def test_mask_url_hides_every_password_form(url, masked, secrets):
    assert mask_url(url) == masked
    assert url_passwords(url) == secrets
    assert mask_url(masked) == masked


def test_records_and_show_hold_the_storage_masked(tiny, tiny_args, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv(STORAGE_ENV, raising=False)
    cfg = tiny(f"tune.storage={SECRET_URL}", "methods=[bcgd]")
    assert cfg.tune.storage == SECRET_URL  # in memory the URL is whole: it is what connects
    shown = mask_url(SECRET_URL)
    # What `qbench run` and every tuning trial write as config.yaml (runner.record_config through config.to_dict).
    record = yaml.safe_load(to_yaml(runner.record_config(cfg, runner.plan_cells(cfg)[0])))
    assert record["tune"]["storage"] == shown
    assert to_dict(cfg)["tune"]["storage"] == shown and "s3/cr" not in to_yaml(cfg) and "0th3r" not in to_yaml(cfg)
    # A stage that sets its own storage is masked too.
    staged = to_dict({"name": "s", "stages": [{"name": "a", "tune": {"storage": SECRET_URL}}]})
    assert staged["stages"][0]["tune"]["storage"] == shown
    # The study summaries and the logs show the storage_label.
    assert storage_label(cfg) == shown
    # `qbench show`
    assert main(["show", "suite=quickstart", *tiny_args, f"tune.storage={SECRET_URL}"]) == 0
    out = capsys.readouterr().out
    assert "qbench:***@dbhost" in out and "s3/cr" not in out and "0th3r" not in out


def test_a_records_masked_url_is_refused_in_one_line(tiny, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv(STORAGE_ENV, raising=False)
    url = "postgresql://alice:hunter2@127.0.0.1:1/qbench"
    cfg = tiny(f"tune.storage={url}", "methods=[bcgd]")
    record = tmp_path / "record" / "config.yaml"
    record.parent.mkdir()
    record.write_text(to_yaml(runner.record_config(cfg, runner.plan_cells(cfg)[0])))
    reloaded = load_config(from_file=record)
    assert reloaded.tune.storage == "postgresql://alice:***@127.0.0.1:1/qbench"
    with pytest.raises(QbenchError) as err:
        open_storage(reloaded)
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith("the record's storage URL is masked")
    assert "tune.storage=" in msg and STORAGE_ENV in msg
    # `qbench run --from <record> tuned=true` needs the storage: one line, exit 2.
    assert main(["run", "--from", str(record), "tuned=true", "--no-progress"]) == 2
    err_text = capsys.readouterr().err.strip()
    assert len(err_text.splitlines()) == 1 and "the record's storage URL is masked" in err_text
    assert "hunter2" not in err_text
    # The fixes the line names: the variable, or tune.storage on the command line.
    monkeypatch.setenv(STORAGE_ENV, url)
    assert storage_url(reloaded) == url
    monkeypatch.delenv(STORAGE_ENV)
    assert storage_url(load_config(overrides=[f"tune.storage={url}"], from_file=record)) == url


def test_storage_from_the_environment(tiny, tmp_path, monkeypatch):
    shared = tmp_path / "shared" / "journal.log"
    monkeypatch.setenv(STORAGE_ENV, str(shared))
    cfg = tiny()
    assert cfg.tune.storage is None and storage_url(cfg) == str(shared) and storage_label(cfg) == str(shared)
    open_storage(cfg)
    assert shared.is_file()
    # tune.storage wins over the variable.
    other = tmp_path / "other.log"
    assert storage_url(tiny(f"tune.storage={other}")) == str(other)
    # A database URL from the variable is shown masked and never lands in a record (tune.storage stays unset).
    monkeypatch.setenv(STORAGE_ENV, SECRET_URL)
    assert storage_label(cfg) == mask_url(SECRET_URL)
    assert "s3/cr" not in to_yaml(runner.record_config(cfg, runner.plan_cells(cfg)[0]))
    monkeypatch.setenv(STORAGE_ENV, "")
    assert storage_url(cfg) is None  # empty: unset


@pytest.mark.parametrize("url, secret", [
    ("postgresql://alice:hunter2@127.0.0.1:1/qbench", "hunter2"),
    ("postgresql://alice:hun/ter2@127.0.0.1:1/qbench", "ter2"),
    ("postgresql://alice@127.0.0.1:1/qbench?password=hunter2", "hunter2"),
])
def test_unreachable_postgres_is_one_line_without_password(tiny, tiny_args, capsys, url, secret):
    cfg = tiny(f"tune.storage={url}")
    with pytest.raises(QbenchError) as err:
        open_storage(cfg)
    msg = str(err.value)
    assert "\n" not in msg and secret not in msg
    assert msg.startswith(f"cannot connect to tune.storage {mask_url(url)}")
    assert main(["tune", "suite=quickstart", "method=fp", *tiny_args, f"tune.storage={url}"]) == 2
    err_text = capsys.readouterr().err
    assert secret not in err_text and len(err_text.strip().splitlines()) == 1
    assert mask_url("postgresql://u:p@h:5/db") == "postgresql://u:***@h:5/db"
    assert mask_url("postgresql://h:5/db") == "postgresql://h:5/db"
