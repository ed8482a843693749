"""`reformer.bench.ab`: the in-process A/B helper of the per-step benchmark scripts (on a fake clock: no timing)."""

from __future__ import annotations

import pytest

from reformer.bench import ab
from reformer.bench.ab import alternate, report


def test_alternate_warms_up_then_interleaves_and_report_prints_the_ratio(monkeypatch: pytest.MonkeyPatch,
                                                                         capsys: pytest.CaptureFixture[str]) -> None:
    clock = [0.0]
    monkeypatch.setattr(ab.time, "perf_counter", lambda: clock[0])
    calls: list[str] = []

    def variant(name: str, seconds: float):  # type: ignore[no-untyped-def]
        def go() -> None:
            calls.append(name)
            clock[0] += seconds
        return go

    times = alternate({"slow": variant("slow", 2.0), "fast": variant("fast", 0.5)}, rounds=3)
    assert calls == ["slow", "fast"] * 4  # one warm-up each, then three alternating rounds
    assert times == {"slow": [2.0, 2.0, 2.0], "fast": [0.5, 0.5, 0.5]}
    report("demo", times, "slow", "fast")
    expected = "demo: {'slow': [2.0, 2.0, 2.0], 'fast': [0.5, 0.5, 0.5]}; slow / fast = 4.000x"
    assert capsys.readouterr().out.strip() == expected
