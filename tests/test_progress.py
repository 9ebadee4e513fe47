"""Progress of long work: a live bar on a terminal, plain lines (one as each stage
starts) without one; the terminal is a real pseudo-terminal, never assumed."""

import fcntl
import os
import pty
import struct
import subprocess
import sys
import termios

from fashionbench.progress import Progress


def test_without_a_terminal_each_stage_or_step_is_one_plain_line(capsys):
    with Progress(2, "stage", announce="stage") as progress:
        assert progress.step("first", lambda: 1) == 1
        progress.step("second", print, "work")
    with Progress(2, "steps", announce="steps") as progress:
        progress.step("first", lambda: None)
        progress.step("second", lambda: None)
    with Progress(3, "quiet", announce="stage", quiet=True) as progress:
        progress.step("first", lambda: None)
    out, err = capsys.readouterr()
    assert out.splitlines() == ["stage ...", "work", "steps: first ...", "steps: second ..."]
    assert err == ""  # no bar, no carriage returns


def on_a_terminal(*args: str, columns: int = 200) -> tuple[int, str]:
    """``fashionbench ARGS`` with stdout and stderr on a pseudo-terminal: exit status, output."""
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    proc = subprocess.Popen([sys.executable, "-m", "fashionbench", *args], stdin=subprocess.DEVNULL,
                            stdout=terminal, stderr=terminal)
    os.close(terminal)
    output = b""
    while True:
        try:
            chunk = os.read(controller, 1 << 16)
        except OSError:  # EIO: the process closed the terminal's last descriptor
            break
        if not chunk:
            break
        output += chunk
    os.close(controller)
    return proc.wait(timeout=60), output.decode(errors="replace")


def test_on_a_terminal_a_stage_is_a_live_bar_not_a_line(tiny_run, data_dir, tmp_path):
    status, output = on_a_terminal("ensemble", str(tiny_run), "--method", "weighted", "--tta", "flip",
                                   "--out", str(tmp_path), "--name", "e", "--data-dir", str(data_dir))
    assert status == 0, output
    assert "\r" in output and "member 1/1" in output and "fitting the members' weights" in output
    # the bar named the stage; the lines said without a terminal are not printed as well
    assert "ensemble: member 1/1" not in output and " ...\r\n" not in output
    assert "writing the report in" in output
    assert "ensemble weighted +flip: " in output  # the results, as ever
