"""Entry point `labcon`: argument parsing only; each area registers its subcommands."""

from __future__ import annotations

import argparse
import importlib
import os
import re
import sqlite3
import sys
import textwrap
import warnings
from collections.abc import Sequence

from labcon.errors import LabconError

# Each module has register(subparsers); imported lazily so `labcon --help` stays fast.
_AREAS: tuple[str, ...] = ("run", "data", "journal", "control", "tui", "bench")


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser with every area's subcommands."""
    parser = argparse.ArgumentParser(
        prog="labcon",
        description="A deep-learning lab console for the terminal. With no subcommand, opens the console.",
    )
    parser.add_argument(
        "--sessions-dir", help="where sessions and the journal live (default: $LABCON_HOME or ./sessions)"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for area in _AREAS:
        importlib.import_module(f"labcon.cli.{area}").register(sub)
    for p in _all_parsers(parser):
        p.formatter_class = WrapFormatter
    return parser


class WrapFormatter(argparse.HelpFormatter):
    """Help that wraps on word boundaries only (argparse splits at hyphens: `--sessions-` / `dir`), and keeps
    a description's own line breaks and indented tables, wrapping each line to the terminal's width."""

    def _split_lines(self, text: str, width: int) -> list[str]:
        return textwrap.wrap(
            " ".join(text.split()), max(width, 10), break_long_words=False, break_on_hyphens=False
        )

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        out = []
        for line in text.splitlines():
            body = line.lstrip(" ")
            if not body:
                out.append("")
                continue
            lead = indent + line[: len(line) - len(body)]
            # A table row ("  term    text") continues under its text when there is room, else 4 further in.
            gap = re.search(r"\S {2,}(?=\S)", body)
            col = len(lead) + gap.end() if gap else len(lead)
            more = " " * col if col <= width // 2 else lead + "    "
            out += textwrap.wrap(
                body,
                max(width, 10 + len(lead)),
                initial_indent=lead,
                subsequent_indent=more,
                break_long_words=False,
                break_on_hyphens=False,
            )
        return "\n".join(out)


def _all_parsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """`parser` and every subcommand's parser below it."""
    out = [parser]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for p in action.choices.values():
                out += _all_parsers(p)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Run the `labcon` command line; returns the exit status."""
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        # No subcommand: the console on the built-in dataset's default session (global options kept).
        args = parser.parse_args([*argv, "open"]) if "open" in _subcommands(parser) else args
        func = getattr(args, "func", None)
        if func is None:
            parser.print_help()
            return 0
    warnings.formatwarning = _one_line_warning  # the documented hook: no source line under each warning
    try:
        return int(func(args) or 0)
    except LabconError as e:
        print(f"labcon: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # The reader went away (`labcon journal search | head`): not an error worth a traceback. Point stdout
        # at /dev/null so the interpreter's final flush does not fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141  # as a process killed by SIGPIPE
    except OSError as e:
        # The last line of defence for a file problem no command anticipated: one line, never a traceback.
        print(f"labcon: error: {os_problem(e)}", file=sys.stderr)
        return 2
    except sqlite3.OperationalError as e:
        print(f"labcon: error: a database operation failed: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("labcon: interrupted", file=sys.stderr)
        return 130


def os_problem(e: OSError) -> str:
    """An OSError as a sentence naming the file(s) and the operating system's reason."""
    reason = e.strerror or str(e)
    files = " -> ".join(str(f) for f in (e.filename, e.filename2) if f is not None)
    if not files:
        return f"{reason}"
    return f"cannot use {files}: {reason}; check the path (does the folder exist, is it a file, may you write there?)"


def _one_line_warning(
    message: Warning | str, category: type[Warning], filename: str, lineno: int, line: str | None = None
) -> str:
    """A warning as one line (`labcon: warning: ...`), without the file, line number and source line."""
    text = " ".join(str(message).split())
    return f"labcon: warning: {text}\n"


def _subcommands(parser: argparse.ArgumentParser) -> set[str]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return set(action.choices)
    return set()
