"""qbench.bench.sweep: rows, ratios and the JSON file `qbench report` reads. No assertion on speed (timed unit tests
are forbidden; the speed goals are checked by `qbench bench` and pytest-benchmark runs, see the README)."""

import json
import math

import pandas as pd
import pytest
import torch

from qbench.report import load_bench
from qbench.bench.sweep import BENCH_KEYS, EXTRA_KEYS, bench_pairs, format_bench, run_bench

TINY = dict(steps=2, warmup=1, min_run_time=0.01)


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    results = tmp_path_factory.mktemp("results")
    df = run_bench(archs=["lenet5"], methods=["ste", "bcgd"], bits_list=["W1A4"], input_size=(1, 28, 28),
                   num_classes=10, in_chans=1, batch_size=8, device="cpu", threads=1, results_dir=results,
                   suite="smoke", **TINY)
    return df, results


def test_rows_have_every_required_key(bench):
    df, _ = bench
    assert isinstance(df, pd.DataFrame)
    assert set(BENCH_KEYS) <= set(df.columns) and set(EXTRA_KEYS) <= set(df.columns)
    assert list(zip(df["method"], df["bits"])) == [("fp", "W32A32"), ("ste", "W1A4"), ("bcgd", "W1A4")]
    assert (df["arch"] == "lenet5").all() and (df["device"] == "cpu").all()
    assert df["error"].isna().all()
    assert (df["batch_size"] == 8).all() and df["amp_dtype"].isna().all()
    assert not df["channels_last"].any() and not df["compile"].any()
    assert (df["torch"] == torch.__version__).all()
    assert df["device_name"].map(lambda s: isinstance(s, str) and len(s) > 0).all()


def test_fp_ratio_is_one_and_ratios_positive_finite(bench):
    df, _ = bench
    fp = df[df["method"] == "fp"].iloc[0]
    assert fp["ratio_train_to_fp"] == 1.0 and fp["ratio_infer_to_fp"] == 1.0
    for column in ("ratio_train_to_fp", "ratio_infer_to_fp", "train_step_ms_median", "train_img_s", "infer_img_s"):
        values = df[column].astype(float)
        assert values.map(math.isfinite).all() and (values > 0).all(), column
    assert (df["train_step_ms_iqr"].astype(float) >= 0).all()
    assert (df["train_samples"] >= TINY["steps"]).all()
    ste = df[df["method"] == "ste"].iloc[0]
    assert ste["ratio_train_to_fp"] == pytest.approx(ste["train_step_ms_median"] / fp["train_step_ms_median"])


def test_thread_count_recorded_and_restored(bench):
    df, _ = bench
    assert (df["threads"] == 1).all()
    before = torch.get_num_threads()
    run_bench(archs=["lenet5"], methods=["fp"], bits_list=["W1A4"], input_size=(1, 28, 28), num_classes=10,
              batch_size=4, device="cpu", threads=1, **TINY)
    assert torch.get_num_threads() == before


def test_json_written_where_load_bench_finds_it(bench):
    df, results = bench
    files = list((results / "smoke" / "bench").glob("*.json"))
    assert len(files) == 1 and files[0].name.startswith("cpu-")
    rows = json.loads(files[0].read_text())
    assert isinstance(rows, list) and len(rows) == 3 and all(set(BENCH_KEYS) <= set(r) for r in rows)
    loaded = load_bench(results, "smoke")
    assert len(loaded) == 3
    assert set(loaded["method"]) == {"fp", "ste", "bcgd"}
    assert loaded.set_index("method").loc["fp", "ratio_train_to_fp"] == 1.0


def test_rerun_replaces_rows_of_the_same_key(tmp_path):
    kw = dict(archs=["lenet5"], bits_list=["W1A4"], input_size=(1, 28, 28), num_classes=10, batch_size=4,
              device="cpu", threads=1, results_dir=tmp_path, suite="s", **TINY)
    run_bench(methods=["ste"], **kw)
    run_bench(methods=["ste", "aqe"], **kw)
    rows = json.loads(next((tmp_path / "s" / "bench").glob("*.json")).read_text())
    assert sorted((r["method"], r["bits"]) for r in rows) == [("aqe", "W1A4"), ("fp", "W32A32"), ("ste", "W1A4")]


def test_failing_row_is_recorded_not_raised():
    # A method that cannot be built (here: not registered) leaves a row with the error; the sweep goes on.
    df = run_bench(archs=["lenet5"], methods=["no_such_method", "bcgd"], bits_list=["W1A4"], input_size=(1, 28, 28),
                   num_classes=10, batch_size=4, device="cpu", threads=1, **TINY)
    bad = df[df["method"] == "no_such_method"].iloc[0]
    assert "no_such_method" in bad["error"] and "bcgd" in bad["error"]  # the one-line error lists the known methods
    assert math.isnan(bad["train_step_ms_median"]) and math.isnan(bad["ratio_train_to_fp"])
    good = df[df["method"] == "bcgd"].iloc[0]
    assert pd.isna(good["error"]) and math.isfinite(good["ratio_train_to_fp"])
    assert "no_such_method" in format_bench(df)


def test_format_bench_shows_ratios(bench):
    df, _ = bench
    text = format_bench(df)
    assert "×FP" in text and "1 threads" in text and "lenet5" in text
    for method in ("fp", "ste", "bcgd"):
        assert method in text
    assert format_bench(pd.DataFrame()) == "(no benchmark rows)"


def test_amp_and_channels_last_are_off_on_cpu():
    df = run_bench(archs=["lenet5"], methods=["fp"], bits_list=["W1A4"], input_size=(1, 28, 28), num_classes=10,
                   batch_size=4, device="cpu", threads=1, amp_dtype="bf16", channels_last=True, **TINY)
    assert df["amp_dtype"].isna().all() and not df["channels_last"].any()


def test_bench_configs_follow_method_bits_and_leave_out_unsupported_pairs():
    """`qbench bench` measures what the suite runs: per-method bit-widths, nothing a method does not support."""
    assert bench_pairs(["fp", "ste", "bcgd"], ["W1A4", "W3A4"]) == [
        ("fp", "W32A32"), ("ste", "W1A4"), ("ste", "W3A4"), ("bcgd", "W1A4")]  # bcgd has no 3-bit weights
    assert bench_pairs(["fp", "twn", "ste"], {"twn": ["W2A2", "W2A32"], "ste": ["W1A1"]}) == [
        ("fp", "W32A32"), ("twn", "W2A32"), ("ste", "W1A1")]  # twn quantizes weights only
