"""Notification dispatch benchmark: ``python -m bench.dispatch`` (``make bench-dispatch``).

The real server (embedded PostgreSQL and Redis) with the limits on (``--rate`` messages/s
overall, ``--chat-interval`` seconds per chat), ``--dispatchers`` real dispatcher processes
(``python -m workers.dispatcher``) and the fake Telegram Bot API (tests/support/fake_telegram.py)
recording when each sendMessage arrived. ``--messages`` notifications are queued up front, spread
over ``--chats`` chats, plus ``--hot-chats`` chats that get ``--hot-messages`` each (where the
per-chat limit binds). Everything is measured at the fake Bot API:

- throughput over the run (first to last send) and its share of the configured global rate
  (goal: at least 0.9);
- per-chat violations: consecutive sends to one chat closer than the interval (goal: 0);
- global violations: 1-second windows holding more than ``--rate`` sends (goal: 0);
- duplicates (goal: 0) and the time to drain the queue.

Results go to stdout and ``.build/bench-dispatch.json``; like the other benchmarks it reports and
does not gate (``--strict``: exit 1 when a goal is missed).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import random
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import asyncpg

from server.kernel.crypto import SecretBox
from server.notifications import repository
from server.notifications.model import Channel, Notice, ToTelegramChat
from tests.support.fake_telegram import Call, FakeBotApi
from tests.support.stack import ROOT, Secrets, infra, migrate, server_env, start_server

SHARE_GOAL = 0.9


def log(message: str) -> None:
    print(f"[bench-dispatch {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def analyse(calls: list[Call], rate: float, chat_interval: float) -> dict[str, Any]:
    sends = sorted(
        (c for c in calls if c.method.lower() == "sendmessage" and c.ok), key=lambda c: c.time
    )
    times = [c.time for c in sends]
    span = times[-1] - times[0] if len(times) > 1 else 0.0
    throughput = (len(times) - 1) / span if span > 0 else 0.0
    window = int(rate)
    global_violations = sum(1 for a, b in zip(times, times[window:], strict=False) if b - a < 1.0)
    by_chat: dict[str, list[float]] = {}
    for call in sends:
        by_chat.setdefault(str(call.params.get("chat_id")), []).append(call.time)
    gaps = [b - a for stamps in by_chat.values() for a, b in itertools.pairwise(stamps)]
    chat_violations = sum(1 for g in gaps if g < chat_interval)
    # Where the global limit was exceeded: the window's start (s into the run) and length.
    samples = [
        (round(times[i] - times[0], 3), round(times[i + window] - times[i], 4))
        for i in range(len(times) - window)
        if times[i + window] - times[i] < 1.0
    ][:10]
    duplicates = sum(n - 1 for n in Counter(c.params.get("text") for c in sends).values() if n > 1)
    return {
        "sent": len(sends),
        "span_s": span,
        "throughput_per_s": throughput,
        "share_of_rate": throughput / rate,
        "global_violations": global_violations,
        "chat_violations": chat_violations,
        "min_chat_gap_s": min(gaps) if gaps else None,
        "duplicates": duplicates,
        "global_violation_windows": samples,
        "sends_per_second": [
            sum(1 for t in times if int(t - times[0]) == second) for second in range(int(span) + 1)
        ],
    }


def spawn_dispatcher(env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    """``python -m workers.dispatcher`` with its output appended to log_path."""
    with log_path.open("ab") as out:
        return subprocess.Popen(  # nosec B603
            [sys.executable, "-m", "workers.dispatcher"],
            env=env,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


async def run(args: argparse.Namespace) -> dict[str, Any]:
    secrets = Secrets()
    workdir: Path = args.workdir
    with infra(workdir / "stack") as running:
        dsn = running.fresh_database("bench_dispatch")
        migrate(dsn, workdir / "migrate.log")
        env = {
            **server_env(dsn, running.redis.url, secrets),
            "SWITCHBOARD_LOG_LEVEL": "warning",
            "SWITCHBOARD_NOTIFICATIONS_GLOBAL_RATE": str(args.rate),
            "SWITCHBOARD_NOTIFICATIONS_PER_CHAT_INTERVAL_S": str(args.chat_interval),
        }
        server = start_server(env, workdir / "server.log")
        fake = FakeBotApi()
        await fake.start()
        procs: list[subprocess.Popen[bytes]] = []
        pool = await asyncpg.create_pool(dsn, min_size=1, max_size=4)
        try:
            box = SecretBox.from_text(secrets.data_key)
            run_id = uuid.uuid4().hex[:8]
            plan = [(1_000_000 + i % args.chats, i) for i in range(args.messages)]
            plan += [
                (2_000_000 + h, args.messages + h * args.hot_messages + j)
                for h in range(args.hot_chats)
                for j in range(args.hot_messages)
            ]
            # Hot chats' messages are spread through the queue (due order is FIFO), so the
            # per-chat limit binds throughout the run rather than in a tail at the end.
            random.Random(7).shuffle(plan)
            async with pool.acquire() as conn:
                for chat, n in plan:
                    await repository.enqueue(
                        conn,
                        box,
                        Notice(
                            ToTelegramChat(chat, "login"),
                            Channel.TELEGRAM,
                            "notifications.admin_message",
                            {"text": f"bench {run_id} #{n}"},
                            f"bench:{run_id}:{n}",
                        ),
                    )
            log(f"queued {len(plan)} notifications; starting {args.dispatchers} dispatcher(s)")
            dispatcher_env = {
                "PATH": os.environ.get("PATH", ""),
                "SWITCHBOARD_ENV": "test",
                "SWITCHBOARD_CONFIG_DIR": str(ROOT / "configs"),
                "SWITCHBOARD_LOG_LEVEL": "warning",
                "SWITCHBOARD_SERVER_ADDR": server.grpc_addr,
                "SWITCHBOARD_SERVICE_TOKEN_DISPATCHER": secrets.dispatcher_token,
                "SWITCHBOARD_LOGIN_BOT_TOKEN": secrets.login_bot_token,
                "SWITCHBOARD_NOTIFICATIONS_SENDER": "real",
                "SWITCHBOARD_TELEGRAM_API_BASE": fake.base_url,
            }
            started = time.monotonic()
            for n in range(args.dispatchers):
                procs.append(
                    spawn_dispatcher(
                        {**dispatcher_env, "SWITCHBOARD_DISPATCHER_NAME": f"bench-{n}"},
                        workdir / f"dispatcher-{n}.log",
                    )
                )
            deadline = started + args.timeout
            while True:
                delivered = await pool.fetchval(
                    "SELECT count(*) FROM notifications_outbox WHERE status = 'delivered'"
                )
                if delivered >= len(plan) or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.2)
            drained = time.monotonic() - started
            result = analyse(fake.calls, args.rate, args.chat_interval)
            result.update(
                {
                    "queued": len(plan),
                    "delivered": delivered,
                    "drain_s": drained,
                    "rate": args.rate,
                    "chat_interval_s": args.chat_interval,
                    "dispatchers": args.dispatchers,
                    "chats": args.chats,
                    "hot_chats": args.hot_chats,
                    "hot_messages": args.hot_messages,
                }
            )
            return result
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
            await pool.close()
            await fake.stop()
            server.terminate()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.dispatch", description=__doc__)
    parser.add_argument("--rate", type=float, default=30.0, help="global messages/s")
    parser.add_argument("--chat-interval", type=float, default=1.0, help="seconds per chat")
    parser.add_argument("--messages", type=int, default=600)
    parser.add_argument("--chats", type=int, default=300)
    parser.add_argument("--hot-chats", type=int, default=3)
    parser.add_argument("--hot-messages", type=int, default=10)
    parser.add_argument("--dispatchers", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=180.0)
    parser.add_argument("--workdir", type=Path, default=ROOT / ".build" / "bench-dispatch")
    parser.add_argument("--json", type=Path, default=ROOT / ".build" / "bench-dispatch.json")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a goal is missed")
    args = parser.parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    result = asyncio.run(run(args))
    ok = (
        result["share_of_rate"] >= SHARE_GOAL
        and result["chat_violations"] == 0
        and result["global_violations"] == 0
        and result["duplicates"] == 0
        and result["delivered"] == result["queued"]
    )
    rows = [
        ("delivered / queued", f"{result['delivered']} / {result['queued']}", "all"),
        ("throughput", f"{result['throughput_per_s']:.2f} msg/s", f"limit {args.rate:g}/s"),
        ("share of the global rate", f"{result['share_of_rate']:.3f}", f">= {SHARE_GOAL}"),
        ("per-chat violations", str(result["chat_violations"]), "0"),
        (
            "min gap within a chat",
            f"{result['min_chat_gap_s'] or 0:.3f} s",
            f">= {args.chat_interval:g} s",
        ),
        ("1 s windows over the rate", str(result["global_violations"]), "0"),
        ("duplicates", str(result["duplicates"]), "0"),
        ("drain time", f"{result['drain_s']:.1f} s", ""),
    ]
    print(f"dispatch benchmark ({args.dispatchers} dispatchers, fake Bot API)")
    for name, value, goal in rows:
        print(f"  {name:<28} {value:>18}   goal {goal}")
    print("  " + ("all goals met" if ok else "GOAL MISSED"))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 1 if args.strict and not ok else 0


if __name__ == "__main__":
    sys.exit(main())
