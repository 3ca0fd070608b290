"""``shard=i/n``: n machines share a suite through one results directory, each cell run exactly once."""

from __future__ import annotations

import itertools

import pytest

from qbench.cli import main
from qbench.config import load_config
from qbench.report import load_runs
from qbench.run.runner import plan_cells, run_suite


pytestmark = pytest.mark.usefixtures("one_thread")


TINY = ["data.name=digits", "methods=[fp,ste,bcgd]", "bits=[W1A4]", "seeds=[0,1]", "train.epochs=1",
        "data.batch_size=64"]


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5])
def test_shards_partition_the_cells_exactly(n):
    everything = plan_cells(load_config("quickstart"))
    assert len(everything) >= 10  # 48 today: fp × 3 seeds + 5 methods × 3 bits × 3 seeds
    shards = [plan_cells(load_config("quickstart", [f"shard={i}/{n}"])) for i in range(n)]
    ids = [[c.run_id for c in shard] for shard in shards]
    assert sorted(itertools.chain.from_iterable(ids)) == sorted(c.run_id for c in everything)  # union = all
    for a, b in itertools.combinations(ids, 2):
        assert not set(a) & set(b)  # pairwise disjoint
    for shard in shards:  # each shard keeps the suite's order
        order = [c.run_id for c in everything]
        assert [c.run_id for c in shard] == sorted((c.run_id for c in shard), key=order.index)
    # deterministic: the same on every machine (a stable hash, not Python's salted one)
    again = [[c.run_id for c in plan_cells(load_config("quickstart", [f"shard={i}/{n}"]))] for i in range(n)]
    assert again == ids


def test_shards_are_balanced_enough_to_be_useful():
    cfg_cells = plan_cells(load_config("quickstart"))
    sizes = [len(plan_cells(load_config("quickstart", [f"shard={i}/4"]))) for i in range(4)]
    assert sum(sizes) == len(cfg_cells) and min(sizes) >= 1


@pytest.mark.parametrize("bad", ["2/2", "-1/3", "1", "a/b", "0/0"])
def test_bad_shard_is_a_one_line_error(bad, capsys):
    assert main(["run", "suite=quickstart", f"shard={bad}"]) == 2
    err = capsys.readouterr().err
    assert "shard" in err and err.count("\n") == 1


def test_three_shards_share_one_results_dir_and_report_merges_them(tmp_path, capsys):
    cells = plan_cells(load_config("quickstart", TINY))
    assert len(cells) == 6
    ran = []
    for i in range(3):  # three "machines", one results directory
        cfg = load_config("quickstart", [*TINY, f"shard={i}/3", f"results_dir={tmp_path}"])
        outcome = run_suite(cfg, progress=False, log=lambda _m: None)
        assert not outcome.failed and not outcome.skipped
        ran.append([r["run_id"] for r in outcome.results])
    flat = list(itertools.chain.from_iterable(ran))
    assert sorted(flat) == sorted(c.run_id for c in cells) and len(set(flat)) == len(flat)
    # some method has its two seeds on different shards (so the report below merges across machines)
    shard_of = {run_id: i for i, ids in enumerate(ran) for run_id in ids}
    split = [c.method for c in cells if c.seed == 0 and shard_of[c.run_id] != shard_of[c.run_id[:-1] + "1"]]
    assert split

    runs = load_runs(tmp_path, "quickstart")
    assert sorted(runs["run_id"]) == sorted(c.run_id for c in cells)  # every cell exactly once
    assert (runs["status"] == "complete").all()
    # a shard that is re-run (a restarted machine) skips its finished cells and runs nothing twice
    again = run_suite(load_config("quickstart", [*TINY, "shard=1/3", f"results_dir={tmp_path}"]), progress=False,
                      log=lambda _m: None)
    assert sorted(again.skipped) == sorted(ran[1]) and not again.results
    # the unsharded suite sees every cell finished
    whole = run_suite(load_config("quickstart", [*TINY, f"results_dir={tmp_path}"]), progress=False,
                      log=lambda _m: None)
    assert len(whole.skipped) == 6 and not whole.results

    out_dir = tmp_path / "boards"
    assert main(["report", "suite=quickstart", f"results_dir={tmp_path}", "--out", str(out_dir), "--no-plots",
                 "--format", "csv", "--format", "md"]) == 0
    md = next(out_dir.rglob("*.md")).read_text()
    rows: dict[str, str] = {}
    for line in md.splitlines():  # the first table: one row per method
        if line.startswith("| "):
            rows.setdefault(line.split("|")[1].strip(), line)
    for method in ("fp", "ste", "bcgd"):
        assert "n=2" in rows[method], rows  # both seeds, from whichever shards ran them, in one mean ± std
