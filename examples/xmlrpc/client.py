"""Call the XML-RPC example like local functions, through ``xmlrpc.client.ServerProxy``.

Start the server first (see app.py), then::

    python examples/xmlrpc/client.py [URL]      # URL defaults to http://127.0.0.1:8000/
"""

from __future__ import annotations

import sys
from xmlrpc.client import Fault, ServerProxy


def main(argv: list[str]) -> int:
    url = argv[1] if len(argv) > 1 else "http://127.0.0.1:8000/"
    with ServerProxy(url) as server:
        print("methods:", ", ".join(server.system.listMethods()))
        print("add(3, 4) =", server.add(3, 4))
        print("multiply(6, 7) =", server.multiply(6, 7))
        print("greeting('Alice') =", server.greeting("Alice"))
        try:
            server.add("three", 4)
        except Fault as fault:
            # The remote TypeError arrives as a Fault, the RPC way of raising across the wire.
            print(f"add('three', 4) -> Fault {fault.faultCode}: {fault.faultString}")
        else:
            print("add('three', 4) unexpectedly succeeded")
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
