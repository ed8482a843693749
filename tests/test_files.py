"""`reformer.files.atomic_write`: the one atomic write (kline exports, checkpoints, training logs, outputs) — all or
nothing, no temporary file left behind, never through a symbolic link."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from reformer.api.types import Kline
from reformer.data.csv_io import write_klines
from reformer.errors import UserInputError
from reformer.files import atomic_write, atomic_write_bytes, atomic_write_text


def test_writes_replaces_and_keeps_the_mode(tmp_path: Path) -> None:
    target = tmp_path / "new" / "notes.txt"  # the folder is created
    assert atomic_write_text(target, "one\n") == target
    assert target.read_text() == "one\n" and stat.S_IMODE(target.stat().st_mode) == 0o644
    target.chmod(0o600)
    atomic_write_bytes(target, b"two\n")
    assert target.read_bytes() == b"two\n" and stat.S_IMODE(target.stat().st_mode) == 0o600
    assert sorted(p.name for p in target.parent.iterdir()) == ["notes.txt"]


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "data.csv"
    target.write_text("old\n")

    def half(temp: Path) -> None:
        temp.write_text("ne")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, half)
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["data.csv"]


def test_refuses_a_symbolic_link_and_a_folder(tmp_path: Path) -> None:
    outside = tmp_path / "precious.txt"
    outside.write_text("keep\n")
    link = tmp_path / "link.txt"
    link.symlink_to(outside)
    with pytest.raises(UserInputError, match=r"link\.txt is a symbolic link: refusing to write through it"):
        atomic_write_text(link, "overwritten\n")
    assert outside.read_text() == "keep\n" and link.is_symlink()
    (tmp_path / "folder").mkdir()
    with pytest.raises(UserInputError, match=r"folder is a folder"):
        atomic_write_text(tmp_path / "folder", "x")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder", "link.txt", "precious.txt"]


def test_every_caller_refuses_a_link(tmp_path: Path) -> None:
    """The kline export, the checkpoint files and the training log (the three former copies) all go through it."""
    import torch

    from reformer.model import ReformerConfig, ReformerModel
    from reformer.training.checkpoint import WEIGHTS_FILE, save_checkpoint
    from reformer.training.loop import _write_metrics

    outside = tmp_path / "precious"
    outside.write_text("keep\n")
    export = tmp_path / "klines.csv"
    export.symlink_to(outside)
    with pytest.raises(UserInputError, match="symbolic link"):
        write_klines([Kline(1_704_067_200_000, 1.0, 2.0, 0.5, 1.5, 4.0, 6.0)], export)

    run = tmp_path / "run"
    run.mkdir()
    (run / WEIGHTS_FILE).symlink_to(outside)
    model = ReformerModel(ReformerConfig(seq_len=8, d_model=8, n_heads=2, n_layers=1, attention_type="full"))
    with torch.no_grad(), pytest.raises(UserInputError, match="symbolic link"):
        save_checkpoint(run, model)

    log = tmp_path / "metrics.csv"
    log.symlink_to(outside)
    with pytest.raises(UserInputError, match="symbolic link"):
        _write_metrics(log, [{"epoch": 1, "train_loss": 1.0, "val_loss": 1.0, "lr": 0.1, "seconds": 1.0}])
    assert outside.read_text() == "keep\n"
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_a_plot_name_must_say_an_image_format(tmp_path: Path) -> None:
    from reformer.files import check_image_file
    from reformer.pipelines.predict import check_outputs

    for name in ("forecast.txt", "forecast", "forecast.csv"):
        with pytest.raises(UserInputError, match=r"--plot .*a plot is an image; end the name in \.png"):
            check_outputs(None, tmp_path / name, force=False)
    for name in ("forecast.png", "forecast.PDF", "forecast.svg"):
        assert check_image_file(tmp_path / name, force=False) == tmp_path / name
    (tmp_path / "taken.png").write_bytes(b"")
    with pytest.raises(UserInputError, match="exists"):  # the usual checks still come first
        check_image_file(tmp_path / "taken.png", force=False)
