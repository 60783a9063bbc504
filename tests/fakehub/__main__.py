"""Run the fake hub on its own: ``python -m fakehub DIR [--repo ORG/NAME=FILE]...`` prints its URL, then
serves until killed. Each ``--repo`` adds a repository holding that one file (benchmarks serve a real
model this way)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from fakehub import FakeHub
from fakehub.repos import build_repos, file_repo


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m fakehub")
    parser.add_argument("root", type=Path)
    parser.add_argument("--repo", action="append", default=[], metavar="ORG/NAME=FILE")
    args = parser.parse_args()
    repos = build_repos(args.root)
    for spec in args.repo:
        repo_id, _, path = spec.partition("=")
        repos[repo_id] = file_repo(repo_id, {Path(path).name: Path(path)}, args.root / "blobs")
    hub = FakeHub(repos)
    print(hub.url, flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        hub.stop()


if __name__ == "__main__":
    main()
