"""Progress output: a log file (stdout and stderr redirected, as in a cluster job, ``nohup`` or CI) gets one summary
line per epoch and no carriage-return progress bar; a terminal still gets the bar."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import struct
import subprocess
import sys
import termios

ARGS = ["-m", "qbench", "run", "suite=quickstart", "data.name=digits", "model.archs=[lenet5]", "train.epochs=2",
        "seeds=[0]", "bits=[W1A4]", "methods=[fp,ste]", "data.batch_size=64"]
EPOCH_LINE = re.compile(r"^epoch (\d+)/2: train loss ", re.MULTILINE)
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def test_a_redirected_run_logs_one_line_per_epoch_per_cell_and_no_progress_bar(tmp_path):
    log = tmp_path / "run.log"
    with log.open("w") as out:
        subprocess.run([sys.executable, *ARGS, f"results_dir={tmp_path}"], stdout=out, stderr=subprocess.STDOUT,
                       stdin=subprocess.DEVNULL, env=ENV, check=True, timeout=600)
    text = log.read_text()
    assert "\r" not in text
    assert [int(m) for m in EPOCH_LINE.findall(text)] == [1, 2, 1, 2]  # 2 cells × 2 epochs
    assert len(text.splitlines()) < 40, text  # the cell headers, the epoch lines and the summary table


def test_a_terminal_still_gets_the_progress_bar(tmp_path):
    parent, child = pty.openpty()
    fcntl.ioctl(child, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))  # a 120-column terminal
    proc = subprocess.Popen([sys.executable, *ARGS, "methods=[fp]", "train.epochs=1", f"results_dir={tmp_path}"],
                            stdout=child, stderr=child, stdin=subprocess.DEVNULL, env=ENV)
    os.close(child)
    chunks = []
    while True:
        try:
            chunk = os.read(parent, 4096)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(parent)
    assert proc.wait(timeout=600) == 0
    text = b"".join(chunks).decode(errors="replace")
    assert "\r" in text.replace("\r\n", "\n") and "epoch 1/1" in text  # tqdm redraws its line
