"""wsgi.input exercises shared by the app (pep_apps.input_ops) and the test, which runs the
same code on io.BytesIO to get the expected result. No side effects on import."""

from __future__ import annotations

import hashlib


def run_input_op(stream, op, n):
    """Apply `op` to a file-like `stream`; return what it produced (the same code runs in
    the test on io.BytesIO to get the expected result)."""
    pieces = []
    if op == "read_n":
        while True:
            c = stream.read(n)
            if not c:
                break
            pieces.append(c)
    elif op == "read_all":
        pieces.append(stream.read())
    elif op == "read_minus1":
        pieces.append(stream.read(-1))
    elif op == "read_none":
        pieces.append(stream.read(None))
    elif op == "readline":
        while True:
            line = stream.readline()
            if not line:
                break
            pieces.append(line)
    elif op == "readline_limit":
        while True:
            line = stream.readline(n)
            if not line:
                break
            pieces.append(line)
    elif op == "readlines":
        pieces.extend(stream.readlines())
    elif op == "readlines_hint":
        groups = []
        while True:
            lines = stream.readlines(n)
            if not lines:
                break
            groups.append([len(x) for x in lines])
            pieces.extend(lines)
        return {"pieces": pieces, "groups": groups}
    elif op == "iter":
        pieces.extend(iter(stream))
    elif op == "mixed":
        pieces.append(stream.read(0))
        pieces.append(stream.read(7))
        pieces.append(stream.readline())
        pieces.append(stream.readline(5))
        pieces.extend(stream.readlines(100))
        pieces.append(stream.read(n))
        pieces.extend(stream)
    else:
        raise ValueError(op)
    return {"pieces": pieces, "groups": None}


def summarize(result, stream):
    pieces = result["pieces"]
    return {
        "lens": [len(p) for p in pieces],
        "types": sorted({type(p).__name__ for p in pieces}),
        "sha256": hashlib.sha256(b"".join(pieces)).hexdigest(),
        "groups": result["groups"],
        "after": [
            repr(stream.read(1)),
            repr(stream.read()),
            repr(stream.read(-1)),
            repr(stream.readline()),
            repr(stream.readline(4)),
            repr(stream.readlines()),
            repr(list(stream)),
        ],
    }


def digest(stream, piece=65536):
    """Read `stream` to the end in `piece`-byte reads, as most frameworks do; return
    (bytes read, sha256 hex digest, largest read)."""
    h = hashlib.sha256()
    total = biggest = 0
    while True:
        chunk = stream.read(piece)
        if not chunk:
            break
        total += len(chunk)
        biggest = max(biggest, len(chunk))
        h.update(chunk)
    return total, h.hexdigest(), biggest
