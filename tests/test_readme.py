"""The README's code blocks run as written: the shell tour against `reformer fake-exchange --synthetic`, the
Python blocks against a local fake exchange named by `BYBIT_BASE_URL`, each in a fresh folder."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from reformer.api import FakeExchange
from reformer.data.synthetic import SyntheticMarketConfig, synthetic_klines

REPO_ROOT = Path(__file__).resolve().parents[1]
README = REPO_ROOT / "README.md"
BIN = Path(sys.executable).parent


def _blocks(language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", README.read_text(encoding="utf-8"), flags=re.S | re.M)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _workdir(tmp_path: Path) -> Path:
    shutil.copytree(REPO_ROOT / "configs", tmp_path / "configs")
    return tmp_path


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("BYBIT_BASE_URL", "BYBIT_WS_URL", "REFORMER_DB")}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["MPLBACKEND"] = "Agg"
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def fake_url() -> Iterator[str]:
    klines = synthetic_klines(SyntheticMarketConfig(n_bars=4000, seed=3))
    with FakeExchange({("linear", "BTCUSDT", "60"): klines}) as fake:
        yield fake.base_url


def test_the_readme_has_the_tour_and_the_seed_names() -> None:
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 250
    assert len(_blocks("bash")) == 2 and len(_blocks("python")) >= 3
    for name in ("ReformerConfig", "ReformerModel", "BybitClient", "DataLoader", "BacktestConfig", "run_backtest"):
        assert name in "".join(_blocks("python")), name


def test_the_shell_tour_runs_as_written(tmp_path: Path) -> None:
    tour = _blocks("bash")[1]
    assert tour.startswith("reformer fake-exchange --synthetic --port 8900 &")
    port = _free_port()  # the README's port, unless another program holds it
    script = "set -euo pipefail\n" + tour.replace("8900", str(port))
    log = tmp_path / "tour.log"
    with log.open("w") as sink:  # a file, not a pipe: the fake exchange left in the background keeps its copy open
        proc = subprocess.Popen(["bash", "-c", script], cwd=_workdir(tmp_path), env=_env(), text=True,
                                stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            proc.wait(timeout=280)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)  # the fake exchange the tour left in the background
    assert proc.returncode == 0, log.read_text()
    assert (tmp_path / "tour.sqlite").is_file()
    assert (tmp_path / "runs" / "tour" / "evaluation.json").is_file()
    assert (tmp_path / "reports" / "tour" / "stats.json").is_file()


@pytest.mark.parametrize("index", range(len(_blocks("python"))))
def test_each_python_block_runs_as_written(index: int, fake_url: str, tmp_path: Path) -> None:
    block = _blocks("python")[index]
    proc = subprocess.run([sys.executable, "-c", block], cwd=_workdir(tmp_path), text=True, capture_output=True,
                          env=_env(BYBIT_BASE_URL=fake_url), timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip() or "print(" not in block, "a block that prints printed nothing"
