"""MkDocs hook: the CLI reference, generated at build time from the real `reformer` command tree.

`docs/reference/cli.md` holds an introduction and the marker `<!-- cli-reference -->`; this hook replaces the
marker with one section per command, walked recursively from `typer.main.get_command(reformer.cli.app)`: the
usage line, the help text, a table of options (names, type, default, help) and, for a group, a table of its
subcommands. Nothing is written by hand, so a command or option added, renamed or removed shows up (or goes) at
the next build.

typer (0.29) vendors its own copy of click (`typer._click`), so click-based tools such as mkdocs-click do not see
its commands; this hook only uses what every click-style command has (`params`, `commands`, `help`,
`get_usage`), with typer's type names where typer provides them.
"""

from __future__ import annotations

import enum
import html
import inspect
import re
import sys
from pathlib import Path
from typing import Any

from mkdocs.exceptions import PluginError

MARKER = "<!-- cli-reference -->"
PROGRAM = "reformer"
_WIDTH = 100  # usage lines wrap here


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any, **_: Any) -> str:
    """Replace the marker on the page that has it (reference/cli.md) with the generated reference."""
    if MARKER not in markdown:
        return markdown
    return markdown.replace(MARKER, render_cli_reference(Path(config["config_file_path"]).parent))


def render_cli_reference(repo_root: Path) -> str:
    """Markdown for the whole command tree."""
    app = _import_app(repo_root)
    import typer.main

    root = typer.main.get_command(app)
    context_class = getattr(root, "context_class", None)
    if context_class is None:  # pragma: no cover - every click-style command has one
        raise PluginError("cli_reference: the root command has no context_class; is this a click-style command?")
    root_ctx = context_class(root, info_name=PROGRAM, terminal_width=_WIDTH, max_content_width=_WIDTH)
    parts: list[str] = []
    _render_command(root, root_ctx, level=1, parts=parts)
    return "\n".join(parts).rstrip() + "\n"


def _import_app(repo_root: Path) -> Any:
    """`reformer.cli.app`, from the installed package or, failing that, from `src/`."""
    try:
        from reformer.cli import app
    except ImportError:
        sys.path.insert(0, str(repo_root / "src"))
        try:
            from reformer.cli import app
        except ImportError as exc:
            raise PluginError(f"cli_reference: cannot import reformer.cli ({exc}); install the package first "
                              "(make venv, or pip install -c constraints.txt -e '.[docs]')") from exc
    return app


# ---- one command --------------------------------------------------------------------------------------------


def _anchor(ctx: Any) -> str:
    return re.sub(r"[^a-z0-9]+", "-", ctx.command_path.lower()).strip("-")


def _render_command(cmd: Any, ctx: Any, level: int, parts: list[str]) -> None:
    """Append `cmd`'s section (below the page title for the root) and, recursively, its subcommands'."""
    if level > 1:
        hashes = "#" * min(level, 6)
        parts.append(f"{hashes} {ctx.command_path} {{ #{_anchor(ctx)} }}\n")
    parts.append(f"```text\n{cmd.get_usage(ctx).strip()}\n```\n")
    help_text = _help_markdown(cmd.help or "", cmd)
    if help_text:
        parts.append(help_text + "\n")
    if getattr(cmd, "deprecated", False):
        parts.append("!!! warning \"Deprecated\"\n    This command is deprecated.\n")

    params = [p for p in cmd.params if not getattr(p, "hidden", False)]
    arguments = [p for p in params if _is_argument(p)]
    options = [p for p in params if not _is_argument(p)]
    if arguments:
        parts.append(_param_table("Argument", arguments, ctx, cmd))
    if options:
        parts.append(_param_table("Option", options, ctx, cmd))
    elif not arguments and not hasattr(cmd, "commands"):
        parts.append("No options besides `--help`.\n")

    subcommands = _subcommands(cmd, ctx)
    if subcommands:
        rows = ["| Command | What it does |", "| --- | --- |"]
        for name, sub in subcommands:
            sub_ctx = _child_context(sub, name, ctx)
            short = sub.get_short_help_str(limit=200) if hasattr(sub, "get_short_help_str") else (sub.help or "")
            rows.append(f"| [`{sub_ctx.command_path}`](#{_anchor(sub_ctx)}) | {_cell(short, sub)} |")
        parts.append("\n".join(rows) + "\n")
        for name, sub in subcommands:
            _render_command(sub, _child_context(sub, name, ctx), level + 1, parts)


def _subcommands(cmd: Any, ctx: Any) -> list[tuple[str, Any]]:
    """A group's visible subcommands, in the order the CLI lists them."""
    if not hasattr(cmd, "commands"):
        return []
    names = cmd.list_commands(ctx) if hasattr(cmd, "list_commands") else list(cmd.commands)
    found = [(name, cmd.get_command(ctx, name) if hasattr(cmd, "get_command") else cmd.commands.get(name))
             for name in names]
    return [(name, sub) for name, sub in found if sub is not None and not getattr(sub, "hidden", False)]


def _child_context(cmd: Any, name: str, parent: Any) -> Any:
    return cmd.context_class(cmd, info_name=name, parent=parent, terminal_width=_WIDTH, max_content_width=_WIDTH)


# ---- parameters ---------------------------------------------------------------------------------------------


def _is_argument(param: Any) -> bool:
    return getattr(param, "param_type_name", "") == "argument" or type(param).__name__.endswith("Argument")


def _param_table(kind: str, params: list[Any], ctx: Any, cmd: Any) -> str:
    rows = [f"| {kind} | Type | Default | Description |", "| --- | --- | --- | --- |"]
    for param in params:
        rows.append(f"| {_names(param)} | {_type(param, ctx)} | {_default(param, ctx)} | "
                    f"{_description(param, cmd)} |")
    return "\n".join(rows) + "\n"


def _names(param: Any) -> str:
    if _is_argument(param):
        return f"`{(param.metavar or param.name or '').upper()}`"
    names = [f"`{name}`" for name in [*param.opts, *getattr(param, "secondary_opts", [])]]
    return " / ".join(names)


def _type(param: Any, ctx: Any) -> str:
    if getattr(param, "is_flag", False) or getattr(param, "count", False):
        return "flag" if not getattr(param, "count", False) else "count"
    label = ""
    display_type = getattr(param, "display_type", None)  # typer: "<int>", "<path>", "<choice|...>"
    if callable(display_type):
        try:
            label = str(display_type(ctx)).strip("<>")
        except Exception:  # a type typer cannot name: fall back below
            label = ""
    if not label:
        click_type = getattr(param, "type", None)
        label = getattr(click_type, "name", "") or "text"
    if getattr(param, "nargs", 1) not in (1, None) or getattr(param, "multiple", False):
        label += ", repeatable"
    return f"`{_escape_code(label)}`"


def _default(param: Any, ctx: Any) -> str:
    if getattr(param, "required", False):
        return "required"
    show_default = getattr(param, "show_default", True)
    if isinstance(show_default, str):
        return _escape(show_default)
    resilient = ctx.resilient_parsing
    ctx.resilient_parsing = True
    try:
        value = param.get_default(ctx, call=False)
    except Exception:  # a default that needs runtime state
        value = None
    finally:
        ctx.resilient_parsing = resilient
    if value is None or show_default is False:
        return ""
    if getattr(param, "is_bool_flag", False) or isinstance(value, bool):
        secondary = getattr(param, "secondary_opts", [])
        if secondary:
            return f"`{param.opts[0] if value else secondary[0]}`"
        return "on" if value else "off"
    if inspect.isfunction(value) or inspect.ismethod(value):
        return "(computed)"
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, list | tuple):
        return ", ".join(f"`{_escape_code(str(item))}`" for item in value) or ""
    text = str(value)
    return f"`{_escape_code(text)}`" if text else '`""`'


def _description(param: Any, cmd: Any) -> str:
    text = _cell(getattr(param, "help", None) or "", cmd)
    envvar = getattr(param, "envvar", None)
    if envvar and getattr(param, "show_envvar", True):
        names = [envvar] if isinstance(envvar, str) else list(envvar)
        text += (" " if text else "") + "(environment: " + ", ".join(f"`{name}`" for name in names) + ")"
    if getattr(param, "deprecated", False):
        text += " (deprecated)"
    return text


# ---- text ---------------------------------------------------------------------------------------------------


def _plain(text: str, cmd: Any) -> str:
    """A help text as the terminal shows it: click's `\\f` cut, rich markup resolved to plain text."""
    text = inspect.cleandoc(text.split("\f", 1)[0])
    mode = getattr(cmd, "rich_markup_mode", None)
    if mode == "rich":
        try:
            from rich.text import Text

            text = Text.from_markup(text).plain
        except Exception:  # not valid markup after all: show it as written
            pass
    return text


def _help_markdown(text: str, cmd: Any) -> str:
    """A command's help as Markdown paragraphs (the `\\b` no-rewrap marker of click becomes a line break)."""
    if getattr(cmd, "rich_markup_mode", None) == "markdown":
        return inspect.cleandoc(text.split("\f", 1)[0])
    paragraphs = []
    for block in re.split(r"\n\s*\n", _plain(text, cmd)):
        lines = [line.strip() for line in block.strip().splitlines() if line.strip() != "\b"]
        if lines:
            paragraphs.append("  \n".join(_escape(line) for line in lines) if block.lstrip().startswith("\b")
                              else _escape(" ".join(lines)))
    return "\n\n".join(paragraphs)


def _cell(text: str, cmd: Any) -> str:
    """Help text for one table cell: one line, pipes outside code spans escaped."""
    if getattr(cmd, "rich_markup_mode", None) == "markdown":
        flat = " ".join(inspect.cleandoc(text).split())
        return "".join(part if part.startswith("`") else part.replace("|", "\\|")
                       for part in re.split(r"(`+[^`]*`+)", flat))
    return _escape(" ".join(_plain(text, cmd).split()))


_CODE_SPAN = re.compile(r"(`+)(.+?)\1")
_MARKDOWN_SPECIAL = re.compile(r"([\\*_\[\]|#])")


def _escape(text: str) -> str:
    """Plain text as Markdown: HTML and Markdown syntax escaped, `code spans` kept."""
    out, last = [], 0
    for match in _CODE_SPAN.finditer(text):
        out.append(_escape_prose(text[last:match.start()]))
        out.append(match.group(0))  # Python-Markdown's tables do not split cells inside code spans
        last = match.end()
    out.append(_escape_prose(text[last:]))
    return "".join(out)


def _escape_prose(text: str) -> str:
    return _MARKDOWN_SPECIAL.sub(r"\\\1", html.escape(text, quote=False))


def _escape_code(text: str) -> str:
    """Text for a single-backtick code span (table cells split on pipes outside code spans only)."""
    return text.replace("`", "'")
