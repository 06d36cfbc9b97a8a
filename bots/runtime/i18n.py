# ruff: noqa: RUF001  (Russian messages: Cyrillic letters are intended)
"""Per-user language for the bots: small dict catalogs (ru, en, fr) with an English fallback.

A key missing in the user's language falls back to English; a key missing everywhere renders as
the key itself (visible in tests, never a crash). Parameters use ``str.format`` names::

    catalog = Catalog(RUNTIME_MESSAGES)
    catalog.add(LOGIN_MESSAGES)
    catalog.text("fr", "throttled", seconds=3)
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

__all__ = [
    "DEFAULT_LANGUAGE",
    "LANGUAGES",
    "RUNTIME_MESSAGES",
    "Catalog",
    "Messages",
    "pick_language",
]

# The same as server.identity.model's (the bots do not import the server's domain code;
# tests/unit/bots/test_runtime_units.py keeps the two equal).
DEFAULT_LANGUAGE = "en"
LANGUAGES = ("ru", "en", "fr")

#: language -> key -> template
Messages = Mapping[str, Mapping[str, str]]

log = logging.getLogger("switchboard.bots.i18n")


def normalize(language: str | None) -> str | None:
    """ "fr-CA" -> "fr"; None for empty or unsupported."""
    if not language:
        return None
    base = language.strip().replace("_", "-").split("-", 1)[0].lower()
    return base if base in LANGUAGES else None


def pick_language(platform_language: str | None, telegram_language: str | None) -> str:
    """The language to answer in.

    The platform user's chosen language (``User.language``; empty when the user never chose,
    "en" included when chosen) wins; else the Telegram client's language (``language_code``)
    when it is supported; else English.
    """
    return normalize(platform_language) or normalize(telegram_language) or DEFAULT_LANGUAGE


class Catalog:
    """Message templates by language and key."""

    def __init__(self, *messages: Messages) -> None:
        self._messages: dict[str, dict[str, str]] = {lang: {} for lang in LANGUAGES}
        for m in messages:
            self.add(m)

    def add(self, messages: Messages) -> None:
        for language, entries in messages.items():
            if language not in LANGUAGES:
                raise ValueError(f"unsupported language {language!r} (supported: {LANGUAGES})")
            self._messages[language].update(entries)

    def keys(self, language: str = DEFAULT_LANGUAGE) -> set[str]:
        return set(self._messages.get(language, {}))

    def text(self, language: str | None, key: str, /, **params: object) -> str:
        lang = normalize(language) or DEFAULT_LANGUAGE
        template = self._messages[lang].get(key)
        if template is None:
            template = self._messages[DEFAULT_LANGUAGE].get(key)
        if template is None:
            log.warning("no message %r in any language", key)
            return key
        try:
            return template.format(**params)
        except (KeyError, IndexError, ValueError):
            log.warning("message %r (%s) needs other parameters", key, lang)
            return template


#: Messages of the runtime itself (errors, throttling); bots add their own.
RUNTIME_MESSAGES: Messages = {
    "en": {
        "throttled": "You are sending messages too fast. Please wait {seconds} s and try again.",
        "error.permission_denied": "Sorry, you are not allowed to do that.",
        "error.not_found": "That code or item was not found, or it has expired.",
        "error.already_exists": "That is already taken.",
        "error.invalid_argument": "That does not look right. Please check what you sent.",
        "error.rate_limited": "Too many attempts. Please try again in {seconds} s.",
        "error.rate_limited_later": "Too many attempts. Please try again later.",
        "error.unavailable": "The service is temporarily unavailable. Please try again in a minute.",
        "error.user_deleted": "Your account has been deleted.",
        "error.failed_precondition": "That cannot be done right now.",
        "error.internal": "Something went wrong on our side (reference {request_id}). Please try again later.",
        "error.internal_no_id": "Something went wrong on our side. Please try again later.",
    },
    "ru": {
        "throttled": "Вы отправляете сообщения слишком часто. Подождите {seconds} с и попробуйте снова.",
        "error.permission_denied": "Извините, у вас нет прав на это действие.",
        "error.not_found": "Код или объект не найден, либо срок его действия истёк.",
        "error.already_exists": "Это уже занято.",
        "error.invalid_argument": "Похоже, что-то не так. Проверьте, что вы отправили.",
        "error.rate_limited": "Слишком много попыток. Попробуйте снова через {seconds} с.",
        "error.rate_limited_later": "Слишком много попыток. Попробуйте позже.",
        "error.unavailable": "Сервис временно недоступен. Попробуйте через минуту.",
        "error.user_deleted": "Ваш аккаунт удалён.",
        "error.failed_precondition": "Сейчас это сделать нельзя.",
        "error.internal": "У нас что-то пошло не так (код {request_id}). Попробуйте позже.",
        "error.internal_no_id": "У нас что-то пошло не так. Попробуйте позже.",
    },
    "fr": {
        "throttled": "Vous envoyez des messages trop vite. Patientez {seconds} s puis réessayez.",
        "error.permission_denied": "Désolé, vous n'avez pas le droit de faire cela.",
        "error.not_found": "Ce code ou cet élément est introuvable ou a expiré.",
        "error.already_exists": "C'est déjà pris.",
        "error.invalid_argument": "Cela ne semble pas correct. Vérifiez ce que vous avez envoyé.",
        "error.rate_limited": "Trop de tentatives. Réessayez dans {seconds} s.",
        "error.rate_limited_later": "Trop de tentatives. Réessayez plus tard.",
        "error.unavailable": "Le service est momentanément indisponible. Réessayez dans une minute.",
        "error.user_deleted": "Votre compte a été supprimé.",
        "error.failed_precondition": "Ce n'est pas possible pour le moment.",
        "error.internal": "Une erreur s'est produite de notre côté (référence {request_id}). Réessayez plus tard.",
        "error.internal_no_id": "Une erreur s'est produite de notre côté. Réessayez plus tard.",
    },
}
