"""The baseline: a bare grpc.aio server (on uvloop, like the real one) answering GetMe.

One generic handler, no interceptor, no database: it deserializes the GetMeRequest and
serializes a fixed GetMeResponse (the real server's answer for the benchmark user, passed in
hex), so the bytes on the wire and the (de)serialization work match the real call.

    python -m bench.echo --response-hex 0a2c... [--port 0]

Prints the bound port on stdout (one line), then serves until SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

import grpc
import uvloop
from switchboard.identity.v1 import identity_pb2 as pb

SERVICE = "switchboard.identity.v1.AuthService"
# The real server's channel options, so HTTP/2 settings do not differ between the two.
SERVER_OPTIONS = [
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
]


def handler(response: pb.GetMeResponse) -> grpc.GenericRpcHandler:
    async def get_me(
        request: pb.GetMeRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> pb.GetMeResponse:
        return response

    return grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "GetMe": grpc.unary_unary_rpc_method_handler(
                get_me,
                request_deserializer=pb.GetMeRequest.FromString,
                response_serializer=pb.GetMeResponse.SerializeToString,
            )
        },
    )


async def serve(response: pb.GetMeResponse, host: str, port: int) -> None:
    server = grpc.aio.server(options=SERVER_OPTIONS)
    server.add_generic_rpc_handlers((handler(response),))
    bound = server.add_insecure_port(f"{host}:{port}")
    await server.start()
    print(bound, flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop(None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.echo", description=__doc__)
    parser.add_argument("--response-hex", required=True, help="serialized GetMeResponse, hex")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    response = pb.GetMeResponse.FromString(bytes.fromhex(args.response_hex))
    uvloop.run(serve(response, args.host, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
