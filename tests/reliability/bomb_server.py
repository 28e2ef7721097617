"""A loopback server of compressed answers, run in its own process by test_decompression_bombs.

Its memory is its own: tracemalloc in the test process then counts only the client.
It prints its port, then answers every taskDetail request with the answer named by
the request's ``shareId`` (its ``taskId`` is always ``t1``) (see ``answers()``), and exits when its stdin closes.

Usage: ``python bomb_server.py CAP`` where CAP is the client's ``max_response_bytes``.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import sys
import zlib

TASK = {"code": "0", "taskInfo": {"taskId": "t1", "taskStatus": 1, "progress": 5}}


def deflate(data: bytes, wbits: int) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, wbits)
    return compressor.compress(data) + compressor.flush()


def json_of_size(size: int) -> bytes:
    """A valid task answer padded with spaces to exactly ``size`` bytes."""
    body = json.dumps(TASK).encode()
    return body + b" " * (size - len(body))


def answers(cap: int) -> dict[str, tuple[bytes, bytes]]:
    """Variant (the share id asked for) -> (Content-Encoding, body)."""
    zeros = b"\0" * (64 << 20)  # 64 MiB: far past any cap, a few KB compressed
    member = gzip.compress(b"\0" * (1 << 20), 9)
    empty_member = gzip.compress(b"", 9)
    valid = json_of_size(1000)
    return {
        # Bombs: small on the wire, huge decoded.
        "gzip-bomb": (b"gzip", gzip.compress(zeros, 9)),
        "x-gzip-bomb": (b"x-gzip", gzip.compress(zeros, 9)),
        "deflate-bomb": (b"deflate", deflate(zeros, zlib.MAX_WBITS)),
        "raw-deflate-bomb": (b"deflate", deflate(zeros, -zlib.MAX_WBITS)),
        "multi-member-bomb": (b"gzip", member * 200),
        # Up to the cap on the wire, each member decoding to nothing: work per member.
        "empty-members": (b"gzip", empty_member * (cap // len(empty_member))),
        # Codings the client never asked for.
        "br": (b"br", os.urandom(2000)),
        "zstd": (b"zstd", os.urandom(2000)),
        "gzip, gzip": (b"gzip, gzip", gzip.compress(gzip.compress(valid))),
        # The boundary: exactly the cap decoded is read, one byte more is refused.
        "gzip-at-cap": (b"gzip", gzip.compress(json_of_size(cap))),
        "gzip-over-cap": (b"gzip", gzip.compress(json_of_size(cap + 1))),
        # Valid answers in every coding the client accepts.
        "gzip-ok": (b"gzip", gzip.compress(valid)),
        "x-gzip-ok": (b"x-gzip", gzip.compress(valid)),
        "deflate-ok": (b"deflate", deflate(valid, zlib.MAX_WBITS)),
        "raw-deflate-ok": (b"deflate", deflate(valid, -zlib.MAX_WBITS)),
        "multi-member-ok": (b"gzip", gzip.compress(valid[:10]) + gzip.compress(valid[10:])),
        "identity-ok": (b"identity", valid),
    }


async def main() -> None:
    cap = int(sys.argv[1])
    table = answers(cap)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                variant = json.loads(await reader.readexactly(length))["shareId"]
                coding, body = table[variant]
                chunked = variant.endswith("-bomb") and variant.startswith("gzip")
                framing = (
                    b"Transfer-Encoding: chunked\r\n"
                    if chunked
                    else b"Content-Length: %d\r\n" % len(body)
                )
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    b"Content-Encoding: " + coding + b"\r\n" + framing + b"\r\n"
                )
                if chunked:
                    for start in range(0, len(body), 4096):
                        piece = body[start : start + 4096]
                        writer.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                    writer.write(b"0\r\n\r\n")
                else:
                    writer.write(body)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    loop = asyncio.get_running_loop()
    stdin_closed = loop.create_future()
    loop.add_reader(
        sys.stdin.fileno(), lambda: stdin_closed.done() or stdin_closed.set_result(None)
    )
    await stdin_closed
    server.close()


if __name__ == "__main__":
    asyncio.run(main())
