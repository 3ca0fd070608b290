"""The command line: listing, one-line user errors, and a tiny end-to-end run."""

import pytest

from qbench.cli import main


def test_list_methods_shows_every_method_with_hyperparameters(capsys):
    assert main(["list", "methods"]) == 0
    out = capsys.readouterr().out
    for name in ("fp", "ste", "bcgd", "aqe", "pcg", "lbw"):
        assert f"\n{name}  [" in "\n" + out
    assert "rho = 1e-05" in out and "estimator = 'clipped_relu'" in out and "== update rule ==" in out


def test_list_suites_and_show(capsys):
    assert main(["list", "suites"]) == 0
    assert "quickstart" in capsys.readouterr().out
    assert main(["show", "suite=quickstart", "train.epochs=1"]) == 0
    assert "epochs: 1" in capsys.readouterr().out


@pytest.mark.parametrize("argv,needle", [
    (["run", "suite=quickstart", "method=nope"], "known methods: aqe, bcgd"),
    (["run", "suite=quickstart", "train.epohs=1"], "did you mean 'train.epochs'"),
    (["run", "suite=imagenet-w1a4"] , "data.root"),
    (["run", "suite=quickstart", "--plugin", "/nonexistent/p.py"], "does not exist"),
    (["report", "suite=quickstart", "results_dir=/nonexistent/results"], "qbench run suite=quickstart"),
])
def test_user_errors_are_one_line_without_traceback(argv, needle, capsys):
    if "imagenet-w1a4" in argv[1]:
        from qbench.config import list_suites

        if "imagenet-w1a4" not in dict(list_suites()):
            pytest.skip("imagenet-w1a4 suite not present in this checkout")
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1 and "Traceback" not in err


def test_tiny_run_prints_a_table(tmp_path, capsys):
    rc = main(["run", "suite=quickstart", "data.name=digits", "methods=[fp,lbw]", "bits=[W2A4]", "seeds=[0]",
               "train.epochs=1", f"results_dir={tmp_path}", "--no-progress"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "| method" in out and "lbw" in out and "lenet5 W2A4" in out
