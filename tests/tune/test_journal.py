"""The tuning journal after a kill or a full disk: a torn last record is cut (the original kept as .bak) before
anything is appended after it, also while other workers go on; a journal corrupt elsewhere is one error line."""

import optuna
import pytest
from optuna.storages.journal import JournalFileSymlinkLock

from qbench.cli import main
from qbench.errors import QbenchError
from qbench.run import runner
from qbench.tune import summary, tune_suite, tuned_overrides
from qbench.tune.storage import journal_path, open_storage

HALF_A_RECORD = b'{"op_code":8,"worker_id":"0c1d-7","trial_id":0,"user_attr":{"qbench_'
NOT_UTF8 = b'{"op_code":8,"user_attr":{"x":"\xff\xfe\xc3'


@pytest.fixture
def tuned(tiny, logs, monkeypatch):
    """A suite with one finished fp study in its journal; returns (cfg of that suite with n_trials=2, journal)."""
    monkeypatch.setattr(summary, "_STORAGE_CACHE", {})  # every tuned_overrides opens the journal as a new process
    extra = ["methods=[fp]", "tune.pruner=none", "tune.epochs=1"]
    tune_suite(tiny(*extra, "tune.n_trials=1"), progress=False, log=logs)
    return tiny(*extra, "tune.n_trials=2"), journal_path(tiny())


def _trials(cfg, study_of):
    study, _ = study_of(cfg, "fp")
    return [(t.number, t.state, t.value, t.params) for t in study.trials]


def test_torn_last_record_is_cut_and_tuning_resumes(tuned, study_of, logs):
    cfg, journal = tuned
    before = _trials(cfg, study_of)
    whole = journal.read_bytes()
    journal.write_bytes(whole + HALF_A_RECORD)  # a worker killed mid-write
    [summary_] = tune_suite(cfg, progress=False, log=logs)
    backup = journal.with_name("journal.log.bak")
    [line] = [line for line in logs if "cut a torn last record" in line]
    assert str(journal) in line and str(backup) in line
    assert backup.read_bytes() == whole + HALF_A_RECORD
    assert journal.read_bytes().startswith(whole) and journal.read_bytes().endswith(b"\n")
    after = _trials(cfg, study_of)
    assert after[:1] == before and len(after) == 2 and summary_["trials_finished"] == 2
    cell = runner.plan_cells(cfg)[0]
    assert tuned_overrides(cfg, cell) == {"train.lr": summary_["best_params"]["train.lr"]}


def test_torn_utf8_is_cut_when_the_journal_is_only_read(tuned, study_of, logs):
    cfg, journal = tuned
    whole = journal.read_bytes()
    journal.write_bytes(whole + NOT_UTF8)
    cell = runner.plan_cells(cfg)[0]
    [trial] = study_of(cfg, "fp")[0].trials  # opening cuts it
    assert tuned_overrides(cfg, cell) == {"train.lr": trial.params["train.lr"]}
    assert journal.read_bytes() == whole
    assert journal.with_name("journal.log.bak").read_bytes() == whole + NOT_UTF8
    # A second repair keeps the first backup.
    journal.write_bytes(whole + HALF_A_RECORD)
    open_storage(cfg, log=logs)
    assert journal.with_name("journal.log.1.bak").read_bytes() == whole + HALF_A_RECORD
    assert sum("cut a torn last record" in line for line in logs) == 1  # (study_of's open printed the first)


def test_a_worker_dying_mid_write_does_not_corrupt_the_next_write(tuned, study_of, logs):
    """Another worker, already running, appends after a torn tail: the tail is cut under the journal lock first."""
    cfg, journal = tuned
    storage = open_storage(cfg, log=logs)
    _, spec = study_of(cfg, "fp")
    study = optuna.load_study(study_name=spec.name, storage=storage)
    whole = journal.read_bytes()
    journal.write_bytes(whole + HALF_A_RECORD)
    study.set_user_attr("written_after_the_tear", 1)
    fresh, _ = study_of(cfg, "fp")
    assert fresh.user_attrs["written_after_the_tear"] == 1 and len(fresh.trials) == 1
    assert journal.with_name("journal.log.bak").read_bytes() == whole + HALF_A_RECORD


def test_a_record_being_written_is_not_cut(tuned, study_of, logs, monkeypatch):
    """The tail is checked again once the lock is held: a writer that was mid-write when the journal was opened has
    finished its record by then."""
    cfg, journal = tuned
    whole = journal.read_bytes()
    journal.write_bytes(whole + b'{"op_code":2,"worker_id":"w","study_id":0,')
    acquire = JournalFileSymlinkLock.acquire

    def writer_finishes_first(lock):
        with open(journal, "ab") as f:
            f.write(b'"user_attr":{"late":1}}\n')
        monkeypatch.setattr(JournalFileSymlinkLock, "acquire", acquire)
        return acquire(lock)

    monkeypatch.setattr(JournalFileSymlinkLock, "acquire", writer_finishes_first)
    study, _ = study_of(cfg, "fp")
    assert study.user_attrs["late"] == 1
    assert not journal.with_name("journal.log.bak").exists()
    assert not any("cut a torn last record" in line for line in logs)


@pytest.mark.parametrize("garbage, what", [(b"garbage\n", "not a JSON record"), (b"\xff\xfe{}\n", "not UTF-8 text")])
def test_a_journal_corrupt_in_the_middle_is_one_line(tuned, tiny_args, capsys, garbage, what):
    cfg, journal = tuned
    lines = journal.read_bytes().splitlines(keepends=True)
    journal.write_bytes(b"".join(lines[:2] + [garbage] + lines[2:]))
    with pytest.raises(QbenchError) as err:
        open_storage(cfg)
    msg = str(err.value)
    assert "\n" not in msg and str(journal) in msg and f"line 3 ({what})" in msg and "head -n 2" in msg
    for command in (["tune", "suite=quickstart", *tiny_args, "methods=[fp]"],
                    ["run", "suite=quickstart", *tiny_args, "methods=[fp]", "tuned=true", "--no-progress"]):
        assert main(command) == 2
        err_text = capsys.readouterr().err.strip()
        assert len(err_text.splitlines()) == 1 and f"tuning journal {journal} is corrupt at line 3" in err_text
