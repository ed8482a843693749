"""`reformer.bench.ab`: the in-process A/B helper of the per-step benchmark scripts."""

from __future__ import annotations

import time

import pytest

from reformer.bench.ab import alternate, report


def test_alternate_warms_up_then_interleaves_and_report_prints_the_ratio(capsys: pytest.CaptureFixture[str]) -> None:
    calls: list[str] = []

    def variant(name: str, seconds: float):  # type: ignore[no-untyped-def]
        def go() -> None:
            calls.append(name)
            time.sleep(seconds)
        return go

    times = alternate({"slow": variant("slow", 0.02), "fast": variant("fast", 0.0)}, rounds=3)
    assert calls == ["slow", "fast"] * 4  # one warm-up each, then three alternating rounds
    assert [len(v) for v in times.values()] == [3, 3]
    assert min(times["slow"]) >= 0.02 > max(times["fast"])
    report("demo", times, "slow", "fast")
    line = capsys.readouterr().out.strip()
    assert line.startswith("demo: {'slow': [") and float(line.rsplit("= ", 1)[1].rstrip("x")) > 1.0

