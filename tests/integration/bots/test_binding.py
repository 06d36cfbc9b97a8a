"""Chat binding and language through the login bot (ChannelService of the identity domain)."""

from __future__ import annotations

import grpc
import pytest
from switchboard.identity.v1 import channels_pb2 as cpb
from switchboard.identity.v1 import channels_pb2_grpc as cpb_grpc
from switchboard.identity.v1 import identity_pb2 as pb

from tests.conftest import Platform
from tests.integration.bots.conftest import StartBots, say
from tests.support.api import Api, next_telegram_id
from tests.support.fake_telegram import FakeBotApi


async def _start_binding(
    channels: cpb_grpc.ChannelServiceAsyncStub, metadata: tuple[tuple[str, str], ...]
) -> cpb.StartTelegramChannelBindingResponse:
    try:
        return await channels.StartTelegramChannelBinding(
            cpb.StartTelegramChannelBindingRequest(), metadata=metadata
        )
    except grpc.aio.AioRpcError as exc:
        if exc.code() == grpc.StatusCode.UNIMPLEMENTED:
            pytest.skip("ChannelService is not served yet")
        raise


async def test_user_binds_the_chat_through_the_bot(
    api: Api, platform: Platform, fake: FakeBotApi, start_bots: StartBots
) -> None:
    await start_bots()
    token = platform.secrets.login_bot_token
    channels = cpb_grpc.ChannelServiceStub(api.channel)
    telegram_id = next_telegram_id()
    session = await api.login(telegram_id)
    started = await _start_binding(channels, session.metadata)
    assert started.deep_link.endswith(f"?start=bind_{started.code}")

    answer = await say(fake, token, telegram_id, f"/start bind_{started.code}")
    assert answer == "This chat is now connected: your notifications will arrive here."
    listed = await channels.ListChannels(cpb.ListChannelsRequest(), metadata=session.metadata)
    chats = [c for c in listed.channels if c.kind == cpb.CHANNEL_KIND_TELEGRAM]
    assert [(c.telegram_chat_id, c.bot) for c in chats] == [(telegram_id, "login")]

    # Opening the link again in the same chat is harmless (the server's confirm is idempotent).
    again = await say(fake, token, telegram_id, f"/start bind_{started.code}", language_code="fr")
    assert again == "Cette discussion est connectée : vos notifications arriveront ici."
    # The code is used: in another chat it is refused politely, in that user's language.
    elsewhere = next_telegram_id()
    refused = await say(fake, token, elsewhere, f"/start bind_{started.code}", language_code="fr")
    assert refused.startswith("Ce lien de connexion de discussion est invalide ou a expiré.")
    listed = await channels.ListChannels(cpb.ListChannelsRequest(), metadata=session.metadata)
    assert [c.telegram_chat_id for c in listed.channels if c.telegram_chat_id] == [telegram_id]


async def test_chat_of_another_user_is_refused(
    api: Api, platform: Platform, fake: FakeBotApi, start_bots: StartBots
) -> None:
    await start_bots()
    token = platform.secrets.login_bot_token
    channels = cpb_grpc.ChannelServiceStub(api.channel)
    owner_chat = next_telegram_id()
    owner = await api.login(owner_chat)
    first = await _start_binding(channels, owner.metadata)
    await say(fake, token, owner_chat, f"/start bind_{first.code}")

    # Someone else opens their own binding link in the owner's chat (e.g. a shared phone).
    other = await api.login()
    second = await _start_binding(channels, other.metadata)
    answer = await say(fake, token, owner_chat, f"/start bind_{second.code}")
    assert answer == "This chat is already connected to another account."


async def test_language_command_sets_the_platform_language(
    api: Api, platform: Platform, fake: FakeBotApi, start_bots: StartBots
) -> None:
    await start_bots()
    token = platform.secrets.login_bot_token
    telegram_id = next_telegram_id()
    session = await api.login(telegram_id)
    answer = await say(fake, token, telegram_id, "/language fr", language_code="en")
    assert answer == "Langue : français."
    # From now on the bot answers in French, whatever the Telegram client's language.
    welcome = await say(fake, token, telegram_id, "/start", language_code="en")
    assert welcome.startswith("Bonjour !")
    me = await api.auth.GetMe(pb.GetMeRequest(), metadata=session.metadata)
    assert me.user.language == "fr"
    usage = await say(fake, token, telegram_id, "/language de")
    assert usage == "Utilisation : /language en | ru | fr"


async def test_english_chosen_explicitly_beats_the_telegram_language(
    api: Api, platform: Platform, fake: FakeBotApi, start_bots: StartBots
) -> None:
    await start_bots()
    token = platform.secrets.login_bot_token
    telegram_id = next_telegram_id()
    session = await api.login(telegram_id)
    # Never chose: the bot follows the Russian Telegram client.
    before = await say(fake, token, telegram_id, "/start", language_code="ru")
    assert before.startswith("Здравствуйте!")
    answer = await say(fake, token, telegram_id, "/language en", language_code="ru")
    assert answer == "Language set to English."
    me = await api.auth.GetMe(pb.GetMeRequest(), metadata=session.metadata)
    assert me.user.language == "en"
    # English is now the user's choice: it wins over the Telegram client's Russian, as it
    # does for notifications.
    welcome = await say(fake, token, telegram_id, "/start", language_code="ru")
    assert welcome.startswith("Hello! I am the Switchboard login bot.")
    unknown = await say(fake, token, telegram_id, "hi", language_code="ru")
    assert unknown == "I only understand /start. Open a link from the website to sign in."


async def test_user_who_never_chose_gets_the_telegram_language(
    api: Api, platform: Platform, fake: FakeBotApi, start_bots: StartBots
) -> None:
    await start_bots(bot_user_cache_ttl=0)
    token = platform.secrets.login_bot_token
    telegram_id = next_telegram_id()
    session = await api.login(telegram_id)
    me = await api.auth.GetMe(pb.GetMeRequest(), metadata=session.metadata)
    assert me.user.language == ""  # never chose
    ru = await say(fake, token, telegram_id, "/start", language_code="ru")
    assert ru.startswith("Здравствуйте! Я бот входа Switchboard.")
    fr = await say(fake, token, telegram_id, "hi", language_code="fr-CA")
    assert fr.startswith("Je ne comprends que /start.")
    # An unsupported (or missing) Telegram language: English.
    de = await say(fake, token, telegram_id, "/start", language_code="de")
    assert de.startswith("Hello! I am the Switchboard login bot.")
    # A choice made elsewhere (the web client) reaches the bot.
    channels = cpb_grpc.ChannelServiceStub(api.channel)
    await channels.SetLanguage(cpb.SetLanguageRequest(language="fr"), metadata=session.metadata)
    chosen = await say(fake, token, telegram_id, "/start", language_code="ru")
    assert chosen.startswith("Bonjour !")
