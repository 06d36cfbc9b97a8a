"""Switchboard's Telegram bots: gRPC clients of the server, run by ``python -m bots``.

:data:`BOTS` lists every bot; the process runs those whose ``SWITCHBOARD_<NAME>_BOT_TOKEN`` is set.
See docs/bots.md.
"""
