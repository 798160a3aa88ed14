"""`labcon run`, `labcon resume`, `labcon replay`: headless training with a control socket."""

from __future__ import annotations

import argparse
import io
import json
import signal
import sys
import threading
import time
from typing import Any

from labcon.cli.argtypes import at_least, seconds, session_name
from labcon.cli.printer import HeadlessPrinter
from labcon.core.hypers import parse_cli_hyper
from labcon.errors import LabconError


def register(sub: argparse._SubParsersAction) -> None:
    """Add the run, resume and replay subcommands."""
    p = sub.add_parser(
        "run",
        help="train headless (plain progress lines, journal, checkpoints, control socket)",
        description="Train a session without the console: progress lines on stdout, every epoch journaled and "
        "checkpointed, and sessions/<name>/control.sock served so `labcon send`, `labcon attach` and the "
        "console can steer the run while it trains.",
    )
    p.add_argument(
        "target",
        nargs="?",
        help="CONFIG.toml, a dataset preset (shapes, mnist_tiny, imagenette, imagewoof; text: pydoc, pydoc_cls), a saved session or a "
        "data folder; default: built-in shapes",
    )
    p.add_argument(
        "--session", type=session_name, help="session name (default: the config's name, or 'default')"
    )
    p.add_argument("--epochs", type=parse_cli_hyper("epochs"), help="override [train] epochs (>= 1)")
    p.add_argument("--lr", type=parse_cli_hyper("lr"), help="override [train] lr (> 0)")
    p.add_argument(
        "--nproc", type=at_least(1), default=1, help="processes (GPUs) to train on via torch.distributed"
    )
    p.add_argument(
        "--nnodes", type=at_least(1), default=1, help="machines in a multi-node run (as torchrun's --nnodes)"
    )
    p.add_argument(
        "--node-rank", type=at_least(0), default=0, help="this machine's index, 0..nnodes-1 (node 0 journals)"
    )
    p.add_argument(
        "--rdzv",
        metavar="HOST:PORT",
        help="rendezvous address: node 0's host and a free port (multi-node runs)",
    )
    p.add_argument(
        "--peer-timeout",
        type=seconds(),
        metavar="SECONDS",
        help="how long a rank waits for the others before it reports a lost peer and stops (default: 2 minutes)",
    )
    headless_options(p, every=10.0)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser(
        "serve",
        help="serve a session on its control socket without training (what `labcon open` starts)",
        description="Open (or create) a session and serve sessions/<name>/control.sock without starting a fit. "
        "It ends on a `shutdown` request (the console's quit), on Ctrl-C / SIGTERM (a live fit is stopped with a "
        "checkpoint), or when no fit is running and no console has been attached for --idle-exit seconds.",
    )
    p.add_argument(
        "target", nargs="?", metavar="TARGET", help="config file, preset, saved session or data folder"
    )
    p.add_argument(
        "--idle-exit",
        type=seconds(zero="end as soon as it is idle"),
        default=IDLE_EXIT_S,
        metavar="SECONDS",
        help=f"end after this long with no fit and no console attached (default {IDLE_EXIT_S:g})",
    )
    headless_options(p, every=60.0, socket=False)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser(
        "resume",
        help="continue a saved session's interrupted fit from its last checkpoint",
        description="Load a session's last checkpoint (weights, optimizer, RNG, schedule position, applied "
        "commands) and finish the fit it was in, headless, exactly where it stopped.",
    )
    p.add_argument("name", help="the session's name (its folder under the sessions directory)")
    headless_options(p, every=10.0)
    p.set_defaults(func=cmd_resume)

    p = sub.add_parser(
        "replay",
        help="re-run a journaled run from its config, seed and commands; or branch from it",
        description="Re-run a journaled run (and the session's runs before it) from its config and seed, "
        "re-applying its commands at the same iterations, and report how far the replay's metrics are from the "
        'original\'s. With --until N --then "COMMAND" it branches: it replays N epochs, applies COMMAND there, '
        "and trains on to the original length (or --epochs), then reports the branch's metrics minus the "
        "parent's for every epoch after the branch point (also journaled on the branch's run).",
    )
    p.add_argument("run", help="run id, or a session name (its latest run)")
    p.add_argument("--until", type=int, metavar="N", help="replay N epochs (1 or more), then stop or branch")
    p.add_argument(
        "--then",
        dest="then_cmd",
        metavar="COMMAND",
        help='branch after --until N with this command, e.g. "set lr=1e-3", "opt sgd" or "fit 2"',
    )
    p.add_argument(
        "--epochs",
        type=int,  # checked with --until by start_replay, which says how they relate
        metavar="N",
        help="a branch's total length in epochs (default: the original's); more than --until",
    )
    p.add_argument(
        "--session", type=session_name, help="name of the new session (default: <session>-replay<RUN>)"
    )
    p.add_argument("--json", action="store_true", help="print the deviation report as JSON")
    headless_options(p, every=10.0)
    p.set_defaults(func=cmd_replay)


def add_trust_code(p: argparse.ArgumentParser) -> None:
    """--trust-code: the one way to let a session re-run user code its checkpoints and journal name."""
    p.add_argument(
        "--trust-code",
        action="store_true",
        help="re-run user callback files (cb add file.py:Class) the session's checkpoints/journal name, "
        "if they still have the journaled hash",
    )


def headless_options(p: argparse.ArgumentParser, every: float, socket: bool = True) -> None:
    """The options every headless command takes: --no-socket (unless it exists to serve one), --every and
    --trust-code."""
    if socket:
        p.add_argument("--no-socket", action="store_true", help="do not serve sessions/<name>/control.sock")
    p.add_argument(
        "--every",
        type=seconds(zero="a line for every progress update"),
        default=every,
        metavar="SECONDS",
        help=f"seconds between progress lines (default {every:g}; 0: every update)",
    )
    add_trust_code(p)


# `labcon serve`: seconds a session with no fit and no console attached waits before its process ends.
IDLE_EXIT_S = 30.0
# After a shutdown request, how long a stopped fit gets to reach its checkpoint before the session is closed.
STOP_WAIT_S = 120.0


def serve_headless(
    session: Any, socket: bool, every: float, start: Any, idle_exit: float | None = None
) -> int:
    """Run `start()` on a session with a printer, a control socket and Ctrl-C = graceful stop; exit code.

    With `idle_exit` None the process ends when the session's work is done (`labcon run`); otherwise it serves
    until a `shutdown` request, or until it has been idle with no client for `idle_exit` seconds (`labcon serve`).
    """
    from labcon.remote.server import ControlServer, control_socket_path
    from labcon.session import messages as M

    # Under torch.distributed only rank 0 talks: one set of progress lines, one socket.
    printer = HeadlessPrinter(session, out=sys.stdout if session.is_main else io.StringIO(), every=every)
    shutdown = threading.Event()
    for notice in session.persist.notices:  # said while the session opened, before anyone listened
        printer._line(f"warning: {notice}")

    def on_shutdown() -> str:
        shutdown.set()
        if session.submit("stop").ok:  # refused when nothing is running
            return "stopping the fit (checkpoint saved), then ending the session process"
        return "ending the session process"

    server = None
    if socket and session.is_main:
        path = control_socket_path(session.home, session.name)
        server = ControlServer(session, path, on_shutdown=on_shutdown).start()
        printer._line(f"session {session.name}: control socket {server.path} (labcon attach {session.name})")
    ends = session.subscribe()
    interrupted = {"n": 0}

    def on_signal(signum: int, _frame: Any) -> None:
        interrupted["n"] += 1
        if interrupted["n"] > 1:
            raise KeyboardInterrupt
        printer._line(on_shutdown() + "; interrupt again to abort")

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    status = "done"
    try:
        start()
        _serve(session, server, shutdown, idle_exit)
        session.wait(STOP_WAIT_S)  # a shutdown stopped the fit: let it reach its checkpoint
        for m in ends.drain():
            if isinstance(m, M.FitEnded):
                status = m.status
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        if server is not None:
            server.close()
        printer.close()
        session.close()
    return {"done": 0, "stopped": 0}.get(status, 1)


def _serve(session: Any, server: Any, shutdown: threading.Event, idle_exit: float | None) -> None:
    """Block until the process should end (see serve_headless)."""
    idle_since: float | None = None
    while not shutdown.is_set():
        idle = session.wait(0.5)
        if idle_exit is None:
            if idle:
                return
            continue
        if idle and (server is None or server.n_clients == 0):
            idle_since = idle_since if idle_since is not None else time.monotonic()
            if time.monotonic() - idle_since >= idle_exit:
                return
        else:
            idle_since = None
        if idle:
            shutdown.wait(0.5)  # wait() returned at once: do not spin


def cmd_run(args: argparse.Namespace) -> int:
    """labcon run."""
    from labcon.cli.launch import check_nodes
    from labcon.core.distributed import dist_env

    env = dist_env()
    try:
        check_nodes(args.nproc, args.nnodes, args.node_rank, args.rdzv)
    except ValueError as e:
        raise LabconError(str(e)) from None
    if (args.nproc > 1 or args.nnodes > 1) and not env.is_distributed:
        from labcon.cli.launch import launch
        from labcon.core.distributed import PEER_TIMEOUT_ENV

        extra = {}
        if args.peer_timeout is not None:
            extra[PEER_TIMEOUT_ENV] = f"{args.peer_timeout:g}"
        try:
            return launch(
                sys.argv[1:],
                args.nproc,
                env=extra,
                nnodes=args.nnodes,
                node_rank=args.node_rank,
                rdzv=args.rdzv,
            )
        except ValueError as e:
            raise LabconError(str(e)) from None
    device = None
    if env.is_distributed:
        from labcon.core.distributed import init_distributed, local_device

        init_distributed()
        device = local_device(env)
    from labcon.session.session import Session
    from labcon.session.target import resolve_target

    t = resolve_target(args.target, args.sessions_dir)
    kw: dict[str, Any] = {
        "rank": env.rank,
        "world_size": env.world_size,
        "device": device,
        "trust_code": args.trust_code,
    }
    if t.config is None:  # a saved session: train it more
        session = Session.resume(args.session or t.name, args.sessions_dir, **kw)
    else:
        config = t.config.replace(name=args.session) if args.session else t.config
        session = Session.from_config(config, args.sessions_dir, **kw)
    try:
        return serve_headless(
            session, not args.no_socket, args.every, lambda: session.start_fit(args.epochs, args.lr)
        )
    finally:
        if env.is_distributed:
            from labcon.core.distributed import cleanup

            cleanup()


def cmd_serve(args: argparse.Namespace) -> int:
    """labcon serve."""
    # Stage lines: `labcon open` relays them while it waits, so a slow first start says what it is doing.
    print("loading torch and the session code ...", flush=True)
    from labcon.session.session import Session

    print(
        "building the session: data (the first start generates the built-in data), model, optimizer ...",
        flush=True,
    )
    session = Session.open_or_create(args.target, sessions_dir=args.sessions_dir, trust_code=args.trust_code)
    print(f"session '{session.name}' ready", flush=True)
    return serve_headless(session, True, args.every, lambda: None, idle_exit=args.idle_exit)


def cmd_resume(args: argparse.Namespace) -> int:
    """labcon resume NAME."""
    from labcon.session.session import Session

    session = Session.resume(args.name, args.sessions_dir, trust_code=args.trust_code)
    if session.persist.restored_from is None:
        session.close()
        raise LabconError(
            f"session {args.name} has no checkpoint to resume from: its first fit ended (or its process died) "
            f"before the first epoch was saved. `labcon run {session.dir / 'session.toml'}` trains it again "
            "from the start"
        )

    def start() -> None:
        if not session.resume_fit():
            print(
                f"session {args.name}: nothing to resume (its last fit finished); `labcon open {args.name}` to train more"
            )

    return serve_headless(session, not args.no_socket, args.every, start)


def cmd_replay(args: argparse.Namespace) -> int:
    """labcon replay RUN."""
    from labcon.session.deviation import describe
    from labcon.session.replay import report, start_replay

    session, plan = start_replay(
        args.run,
        args.sessions_dir,
        args.until,
        args.then_cmd,
        args.session,
        epochs=args.epochs,
        trust_code=args.trust_code,
    )
    code = serve_headless(
        session,
        not args.no_socket,
        args.every,
        lambda: print(f"replaying run {plan.run_id} as session {session.name}"),
    )
    rep = report(session, plan.run_id, args.until)  # the session is closed; its history is still in memory
    if args.json:
        print(json.dumps(rep, indent=2))
        return code
    dev = ", ".join(f"{k} {v:.2e}" for k, v in rep["max_abs_deviation"].items()) or "no common epochs"
    upto = f" (epochs before {args.until})" if args.until is not None else ""
    print(f"replay of run {rep['original_run']} -> run {rep['replay_run']}: max deviation{upto} {dev}")
    branch = rep["branch"]
    if branch is not None:
        print(
            f"branch after epoch {branch['after_epoch']} with '{branch['then']}', "
            f"{branch['epochs_trained']} epoch(s) trained; branch minus parent: {describe(branch['deltas'])}"
        )
        values = [v for d in branch["deltas"] for k, v in d.items() if k != "epoch"]
        if values and all(abs(v) < 1e-9 for v in values):
            print(
                f"note: the branch ended with the parent's metrics: '{branch['then']}' changed nothing that "
                "lasted (a schedule may set that value again at every batch)"
            )
    return code
