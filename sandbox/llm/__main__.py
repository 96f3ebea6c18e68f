"""Run the LLM sandbox: `python -m sandbox.llm --port 8072 --api-key-file F`.

Prints `llm sandbox: http://127.0.0.1:PORT`, then `ready`, and serves until Ctrl-C or SIGTERM. The key
is read from the file (never from the command line, where `ps` would show it) and never printed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sandbox.llm.server import LlmSandbox
from sandbox.serving import serve_until_stopped


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m sandbox.llm",
        description="Anthropic's Messages API and OpenAI's Chat Completions on this machine, answering "
                    "scripted replies (POST /_sandbox/replies) and faults (POST /_sandbox/faults).")
    parser.add_argument("--port", type=int, default=8072, help="port on 127.0.0.1 (0: a free one; "
                                                               "default: %(default)s)")
    parser.add_argument("--api-key-file", required=True,
                        help="a file holding the one API key the sandbox accepts (x-api-key or Bearer)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        key = Path(args.api_key_file).read_text().strip()
    except OSError as exc:
        print(f"llm sandbox: cannot read the API key file: {exc.strerror or exc}", file=sys.stderr)
        return 2
    if not key:
        print(f"llm sandbox: the API key file {args.api_key_file} is empty", file=sys.stderr)
        return 2
    sandbox = LlmSandbox(key)
    try:
        url = sandbox.start(args.port)
    except OSError as exc:
        print(f"llm sandbox: cannot listen on 127.0.0.1:{args.port}: {exc}", file=sys.stderr)
        return 1
    return serve_until_stopped("llm sandbox", url, sandbox.close)


if __name__ == "__main__":
    sys.exit(main())
