"""Close codes as labels: the defined ones by number, a client's other codes in three buckets.

A client may close with any code from 1000 to 4999, so counting closes by the raw code would
let one client make thousands of metric series (and fill the dashboard's history). Labels
come from a bounded set instead:

- the codes RFC 6455 and the IANA registry define, 1000-1015 (1004 is reserved: "other"),
  by number ("1000");
- a client's 3000-3999 (registered by libraries and frameworks) as ``"3xxx"``, its
  4000-4999 (private use) as ``"4xxx"``, and anything else as ``"other"``;
- a 3000-4999 code the server sent itself (a handler's ``Close(4001)``) by number: the app's
  own code chooses those, so they are as many as the app defines.
"""

from __future__ import annotations

DEFINED: dict[int, str] = {
    1000: "normal",
    1001: "going away",
    1002: "protocol error",
    1003: "unsupported data",
    1005: "no status",
    1006: "abnormal",
    1007: "invalid data",
    1008: "policy violation",
    1009: "too big",
    1010: "extension needed",
    1011: "server error",
    1012: "service restart",
    1013: "try again later",
    1014: "bad gateway",
    1015: "TLS handshake",
}
"""The close codes RFC 6455 and the IANA registry define, with a short caption each."""
REGISTERED = "3xxx"
PRIVATE = "4xxx"
OTHER = "other"
_LABELS = {code: str(code) for code in DEFINED}
_BUCKET_CAPTIONS = {
    REGISTERED: "3000-3999 registered",
    PRIVATE: "4000-4999 private",
    OTHER: "other",
}


def close_code_label(code: int, *, chosen_by_client: bool) -> str:
    """The label counting a close with ``code`` (one dict lookup or two comparisons)."""
    label = _LABELS.get(code)
    if label is not None:
        return label
    if 3000 <= code <= 4999:
        if not chosen_by_client:
            return str(code)
        return REGISTERED if code < 4000 else PRIVATE
    return OTHER


def close_code_caption(label: str) -> str:
    """What a chart shows for a label: ``"1000 normal"``, ``"4000-4999 private"``,
    ``"4001 app"`` (a code of the app's own)."""
    bucket = _BUCKET_CAPTIONS.get(label)
    if bucket is not None:
        return bucket
    meaning = DEFINED.get(int(label)) if label.isdigit() else None
    return f"{label} {meaning or 'app'}"
