"""Issue a token for the chat run with a secret (``CORRAL_CHAT_SECRET``): it sets the nick.

    CORRAL_CHAT_SECRET=... python -m examples.chat.token ann --rooms lobby,dev --hours 8

prints the token, and the page's address to open with it (the token in the fragment, which
the browser never sends to the server). A real application issues tokens from its own login.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from server.tokens import TokenAuth

from .app import SECRET_VARIABLE


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="issue a chat token (the nick it sets)")
    parser.add_argument("nick")
    parser.add_argument("--rooms", help="comma-separated rooms it may join (default: any)")
    parser.add_argument("--hours", type=float, default=8.0, help="valid for (default: 8)")
    parser.add_argument("--url", default="http://127.0.0.1:8080/", help="the chat's page")
    args = parser.parse_args(argv)
    secret = os.environ.get(SECRET_VARIABLE)
    if not secret:
        parser.error(f"set {SECRET_VARIABLE} to the secret the chat server runs with")
    rooms = None if args.rooms is None else [f"room:{room}" for room in args.rooms.split(",")]
    token = TokenAuth(secret).issue(args.nick, expires_in=args.hours * 3600, topics=rooms)
    print(token)
    print(f"{args.url}#token={token}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
