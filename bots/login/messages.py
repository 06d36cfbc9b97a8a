# ruff: noqa: RUF001  (Russian messages: Cyrillic letters are intended)
"""The login bot's messages (ru, en, fr; English is the fallback)."""

from __future__ import annotations

from bots.runtime.i18n import Messages

MESSAGES: Messages = {
    "en": {
        "login.welcome": (
            "Hello! I am the Switchboard login bot.\n"
            "To sign in, open the login link shown on the website; to receive notifications "
            "here, use the chat link from your settings."
        ),
        "login.confirmed": "You are signed in. You can go back to the website now.",
        "login.code_not_found": "This login link is invalid or has expired. Please start again on the website.",
        "bind.confirmed": "This chat is now connected: your notifications will arrive here.",
        "bind.code_not_found": "This connection link is invalid or has expired. Please create a new one in your settings.",
        "bind.elsewhere": "This chat is already connected to another account.",
        "bind.private_only": "Please open the link in a private chat with me.",
        "language.set": "Language set to English.",
        "language.usage": "Usage: /language en | ru | fr",
        "unknown": "I only understand /start. Open a link from the website to sign in.",
        "command.start": "Start / sign in",
        "command.language": "Change the language",
    },
    "ru": {
        "login.welcome": (
            "Здравствуйте! Я бот входа Switchboard.\n"
            "Чтобы войти, откройте ссылку входа на сайте; чтобы получать уведомления здесь, "
            "используйте ссылку подключения чата в настройках."
        ),
        "login.confirmed": "Вы вошли. Можно вернуться на сайт.",
        "login.code_not_found": "Ссылка для входа недействительна или устарела. Начните заново на сайте.",
        "bind.confirmed": "Чат подключён: уведомления будут приходить сюда.",
        "bind.code_not_found": "Ссылка подключения недействительна или устарела. Создайте новую в настройках.",
        "bind.elsewhere": "Этот чат уже подключён к другому аккаунту.",
        "bind.private_only": "Откройте ссылку в личном чате со мной.",
        "language.set": "Язык: русский.",
        "language.usage": "Использование: /language en | ru | fr",
        "unknown": "Я понимаю только /start. Откройте ссылку с сайта, чтобы войти.",
        "command.start": "Начать / войти",
        "command.language": "Сменить язык",
    },
    "fr": {
        "login.welcome": (
            "Bonjour ! Je suis le bot de connexion de Switchboard.\n"
            "Pour vous connecter, ouvrez le lien de connexion affiché sur le site ; pour "
            "recevoir les notifications ici, utilisez le lien de discussion de vos paramètres."
        ),
        "login.confirmed": "Vous êtes connecté. Vous pouvez retourner sur le site.",
        "login.code_not_found": "Ce lien de connexion est invalide ou a expiré. Recommencez sur le site.",
        "bind.confirmed": "Cette discussion est connectée : vos notifications arriveront ici.",
        "bind.code_not_found": "Ce lien de connexion de discussion est invalide ou a expiré. Créez-en un nouveau dans vos paramètres.",
        "bind.elsewhere": "Cette discussion est déjà connectée à un autre compte.",
        "bind.private_only": "Ouvrez le lien dans une discussion privée avec moi.",
        "language.set": "Langue : français.",
        "language.usage": "Utilisation : /language en | ru | fr",
        "unknown": "Je ne comprends que /start. Ouvrez un lien du site pour vous connecter.",
        "command.start": "Démarrer / se connecter",
        "command.language": "Changer de langue",
    },
}

#: Server ErrorInfo reasons with a message of their own.
REASONS = {
    "HANDSHAKE_NOT_FOUND": "login.code_not_found",
    "BINDING_CODE_NOT_FOUND": "bind.code_not_found",
    "TELEGRAM_CHAT_BOUND_ELSEWHERE": "bind.elsewhere",
}
