"""A DHT peer process for interop tests: an stt_asyncio node (argv[1] "stt_asyncio") or an
stt_anyio node on trio (argv[1] "trio"), over argv[2]'s transport ("udp" or "websocket").

It prints "READY <port> <node id hex>", then obeys lines on stdin until it closes:
"BOOT <port> <id hex>" bootstraps through that loopback node and prints "BOOTED <contacts>";
"PUT <key hex> <value hex>" prints "STORED <count>"; "GET <key hex>" prints "VALUE <hex>" or
"VALUE NONE"; "ALL <key hex>" prints "RECORDS" then "<publisher hex>:<value hex>" for each
publisher's record, freshest first."""

from __future__ import annotations

import asyncio
import sys
import warnings
from typing import Any

import anyio

import stt_anyio
import stt_asyncio

warnings.simplefilter("ignore")


async def obey(node: Any, read_line: Any) -> None:
    print("READY", node.address[1], node.node_id.hex(), flush=True)
    while line := (await read_line()).split():
        command, args = line[0], line[1:]
        if command == "BOOT":
            count = await node.dht.bootstrap([("127.0.0.1", int(args[0]), bytes.fromhex(args[1]))])
            print("BOOTED", count, flush=True)
        elif command == "PUT":
            stored = await node.dht.put(bytes.fromhex(args[0]), bytes.fromhex(args[1]))
            print("STORED", stored, flush=True)
        elif command == "GET":
            value = await node.dht.get(bytes.fromhex(args[0]))
            print("VALUE", "NONE" if value is None else value.hex(), flush=True)
        elif command == "ALL":
            records = await node.dht.get_all(bytes.fromhex(args[0]))
            print("RECORDS", *(f"{r.publisher.hex()}:{r.value.hex()}" for r in records),
                  flush=True)


async def main_asyncio(transport: str) -> None:
    async with stt_asyncio.STTNode(transport=transport) as node:
        await obey(node, lambda: asyncio.to_thread(sys.stdin.readline))


async def main_trio(transport: str) -> None:
    async with stt_anyio.STTNode(transport=transport) as node:
        await obey(node, lambda: anyio.to_thread.run_sync(sys.stdin.readline))


if __name__ == "__main__":
    if sys.argv[1] == "stt_asyncio":
        stt_asyncio.run(main_asyncio(sys.argv[2]))
    else:
        anyio.run(main_trio, sys.argv[2], backend="trio")
