"""Headless Chromium (Debian's ``chromium``, installed by ``deploy/local/bootstrap.sh test``) for the tests that
open intake's pages or the review report as a person would, and the console check they share.

Console messages: with ``--enable-logging=stderr --v=0`` Chromium writes every message a page logs to its
console (console.*, uncaught exceptions, Content-Security-Policy violations), whatever its level, as one stderr
line ``[pid:tid:MMDD/HHMMSS.us:INFO:CONSOLE:<line>] "<message>", source: <url> (<line>)`` (older builds:
``CONSOLE(<line>)``). Every other stderr line is the browser's own noise (D-Bus, GPU, sandbox).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

PHONE = "390,844"
DESKTOP = "1280,1600"
CHROMIUM_TIMEOUT_S = 60.0

_CONSOLE = re.compile(r"^\[[^\]]*:CONSOLE[:(]")
_TOKEN = re.compile(r"/act/[A-Za-z0-9_.-]+")
_ALARMS = ("Uncaught", "Refused to", "Content Security Policy", "ERROR:CONSOLE")


def console_problems(stderr: str) -> list[str]:
    """The stderr lines of a Chromium run that are page console messages or mention a script error or a
    Content-Security-Policy refusal (see the module docstring)."""
    lines = [line for line in stderr.splitlines() if _CONSOLE.match(line) or any(a in line for a in _ALARMS)]
    return [redacted(line) for line in lines]


def redacted(text: str) -> str:
    """``text`` without link tokens (Chromium's lines name the page's URL, which holds one)."""
    return _TOKEN.sub("/act/<token>", text)


@dataclass(frozen=True)
class Browser:
    """Chromium's command line, headless, with a throwaway profile."""

    binary: str
    profile: Path
    window: str = PHONE

    def run(self, url: str, *args: str) -> tuple[str, str]:
        """(stdout, stderr) of one headless run on ``url``; the whole process group is killed after the limit."""
        cmd = [
            self.binary,
            "--headless=new",
            "--no-sandbox",  # root in CI containers
            "--disable-gpu",
            "--disable-dev-shm-usage",  # containers' /dev/shm is often 64 MB
            "--no-first-run",
            f"--user-data-dir={self.profile}",
            "--enable-logging=stderr",
            "--v=0",
            f"--window-size={self.window}",
            *args,
            url,
        ]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
        try:
            out, err = proc.communicate(timeout=CHROMIUM_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise AssertionError(f"chromium did not finish within {CHROMIUM_TIMEOUT_S:.0f}s on {args}") from None
        assert proc.returncode == 0, f"chromium exited {proc.returncode}: {redacted(err[-2000:])}"
        return out, err

    def screenshot(self, url: str, png: Path) -> str:
        """Takes a screenshot of ``url`` into ``png``; returns stderr."""
        _, err = self.run(url, f"--screenshot={png}")
        assert png.is_file() and png.stat().st_size > 1000, f"no screenshot written: {redacted(err[-2000:])}"
        return err

    def dom(self, url: str) -> tuple[str, str]:
        """(the DOM after load, serialised; stderr)."""
        return self.run(url, "--dump-dom")


def find_browser(profile: Path, window: str = PHONE) -> Browser:
    binary = shutil.which("chromium")
    if binary is None:
        raise RuntimeError("Chromium is not installed: apt-get install chromium (bash deploy/local/bootstrap.sh test)")
    return Browser(binary, profile, window)
