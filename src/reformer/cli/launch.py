"""The running command's arguments, rebuilt from what click parsed: what `reformer train --nproc N` hands each
torchrun worker (`reformer.pipelines.train.launch_local`)."""

from __future__ import annotations

from typing import Any

import typer

__all__ = ["command_args"]


def command_args(context: typer.Context, drop: tuple[str, ...] = ()) -> list[str]:
    """The command's options as flags again (only those that differ from their defaults), without the parameters
    named in `drop`: options of every kind, so a flag added to the command later travels too."""
    args: list[str] = []
    for param in context.command.params:
        option: Any = param  # typer's vendored click Option: opts, secondary_opts, is_flag, multiple
        name = param.name
        if name is None or name in drop or param.param_type_name != "option":
            continue
        value = context.params.get(name)
        if value is None or value == param.default:
            continue
        if option.is_flag:
            args += (option.opts if value else option.secondary_opts)[:1]
        else:
            for item in value if option.multiple else (value,):
                args += [option.opts[0], str(item)]
    return args
