"""Writes the committed seed inputs of the fuzz targets (run from anywhere; idempotent).

Each target reads a few parameter bytes before its payload (see the target's doc
comment): the seeds use the default limits (and no splits) unless named otherwise.
"""

from pathlib import Path

HERE = Path(__file__).resolve().parent

REQUESTS = {
    "get": b"GET /a/b?c=d HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n\r\n",
    "get10": b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    "post_length": b"POST /form HTTP/1.1\r\nHost: x:8080\r\nContent-Type: text/plain\r\n"
    b"Content-Length: 5\r\n\r\nhello",
    "post_chunked": b"POST /up HTTP/1.1\r\nHost: [::1]:80\r\nTransfer-Encoding: chunked\r\n"
    b"Expect: 100-continue\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    "absolute": b"GET http://example.com/p%20q?x=%41#frag HTTP/1.1\r\nHost: example.com\r\n\r\n",
    "absolute_https": b"GET HTTPS://Example.com/app/x HTTP/1.1\r\nHost: e\r\n\r\n",
    "options_star": b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n",
    "connect": b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
    "repeated": b"GET /app/%7euser HTTP/1.1\r\nHost: h\r\nX-A: 1\r\nx-a: 2\r\nX_A: 3\r\n"
    b"Cookie: a=b\r\nCookie: c=d\r\nConnection: close\r\n\r\n",
    "leading_crlf_pipelined": b"\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\nGET /2 HTTP/1.1\r\nHost: h\r\n\r\n",
    "non_ascii": "GET /caf\u00e9/\u20ac HTTP/1.1\r\nHost: h\r\nX-L: \u00e9t\u00e9\r\n\r\n".encode(),
    "smuggle_cl_te": b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "bad_lf": b"GET / HTTP/1.1\nHost: h\n\n",
    "bad_version": b"GET / HTTP/2.0\r\n\r\n",
    "ows_value": b"GET / HTTP/1.1\r\nHost:  h \t\r\nX-Empty:\r\n\r\n",
}

CHUNKED = {
    "simple": b"5\r\nhello\r\n0\r\n\r\n",
    "two_chunks_trailer": b"5\r\nhello\r\n6;name=val\r\n world\r\n0\r\nX-T: yes\r\n\r\nNEXT",
    "extensions": b'a ; a = b ; c="q \\" x"\r\n0123456789\r\n0;last\r\n\r\n',
    "hex_upper": b"A\r\n0123456789\r\nf\r\n0123456789abcde\r\n00\r\n\r\n",
    "bare_lf": b"5\nhello\r\n0\r\n\r\n",
    "too_long": b"00000000000000001\r\nx\r\n0\r\n\r\n",
    "ext_ws_end": b"5;a \r\nhello\r\n0\r\n\r\n",
    "partial": b"10\r\nonly part of it",
}


def write(target: str, name: str, data: bytes) -> None:
    d = HERE / target
    d.mkdir(exist_ok=True)
    (d / name).write_bytes(data)


for name, req in REQUESTS.items():
    # head: limits byte (0 = defaults), three prefix-cut bytes.
    write("head", name, b"\x00\x40\x80\xc0" + req)
    # environ: limits byte, settings byte (root path, scheme, flags), listener/peer byte.
    write("environ", name, b"\x00\x01\x00" + req)
# Small limits: line 40, 2 fields, 30-byte fields, a 10-byte body.
write("head", "small_limits", b"\x01\x28\x02\x1e\x00\x0a\x40\x80\xc0" + REQUESTS["post_length"])
write("environ", "root_https_unix", b"\x00\x1d\x05" + REQUESTS["repeated"])

for name, body in CHUNKED.items():
    # chunked: flags (0 = no binding limit), no split points.
    write("chunked", name, b"\x00\x00" + body)
# Three split points; and small limits (body 8, trailer 16, field 8).
write("chunked", "split3", b"\x00\x03\x00\x01\x00\x07\x00\x0d" + CHUNKED["two_chunks_trailer"])
write("chunked", "small_limits", b"\x01\x08\x10\x08\x00" + CHUNKED["two_chunks_trailer"])
