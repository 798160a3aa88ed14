"""Run the console on a live FakeSession in this terminal (used by the tmux end-to-end test).

python tests/fake_console.py [OUTFILE]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from labcon.tui.app import build_app  # noqa: E402
from tests.fakes import FakeSession  # noqa: E402


def main() -> int:
    """Console on a FakeSession that is training (200 batches/s)."""
    fake = FakeSession(state="running")
    fake.start_live(200.0)
    app = build_app(fake, images="halfcell")
    try:
        app.run()
    finally:
        fake.close()
    line = f"fake console exited; received={fake.received}; detached={fake.detached}\n"
    if len(sys.argv) > 1:  # the end-to-end test reads the outcome from this file
        Path(sys.argv[1]).write_text(line)
    print(line, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
