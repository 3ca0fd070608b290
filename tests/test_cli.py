"""The command line: listing, one-line user errors, and a tiny end-to-end run."""

import pytest

from qbench.cli import main


def test_list_methods_shows_every_method_with_hyperparameters(capsys):
    assert main(["list", "methods"]) == 0
    out = capsys.readouterr().out
    for name in ("fp", "ste", "bcgd", "aqe", "pcg", "lbw"):
        assert f"\n{name}  [" in "\n" + out
    assert "rho = 1e-05" in out and "estimator = 'clipped_relu'" in out and "== update rule ==" in out


def test_list_methods_groups_by_family_in_order_and_cites_papers(capsys):
    import qbench

    assert main(["list", "methods"]) == 0
    out = capsys.readouterr().out
    sections: dict[str, list[str]] = {}  # family header -> the method lines printed under it
    for line in out.splitlines():
        if line.startswith("== "):
            family = line[3:-3]
            sections[family] = []
        elif line and not line.startswith(" "):
            sections[family].append(line)
    assert list(sections)[:4] == ["baseline", "weight quantizer", "activation estimator", "update rule"]
    arxiv = {"binaryconnect": "1511.00363", "bnn": "1602.02830", "xnor": "1603.05279", "bwn": "1603.05279",
             "twn": "1605.04711", "binaryrelax": "1801.06313", "irnet": "1909.10788", "bireal": "1808.00278",
             "proxquant": "1810.00861", "ste": "1903.05662", "bcgd": "1808.05240", "aqe": "2003.04296",
             "lbw": "1612.06052", "pcg": "2012.05529"}
    for name, number in arxiv.items():
        family = qbench.registry.get_method_class(name).family
        line = next(m for m in sections[family] if m.startswith(f"{name}  ["))  # listed under its own family
        assert f"[{family}]" in line and f"arXiv {number}" in line, line  # the paper cited on the method's line


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
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1 and "Traceback" not in err


def test_tiny_run_prints_a_table(tmp_path, capsys):
    rc = main(["run", "suite=quickstart", "data.name=digits", "methods=[fp,lbw]", "bits=[W2A4]", "seeds=[0]",
               "train.epochs=1", f"results_dir={tmp_path}", "--no-progress"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "| method" in out and "lbw" in out and "lenet5 W2A4" in out
