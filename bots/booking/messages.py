# ruff: noqa: RUF001  (Russian messages: Cyrillic letters are intended)
"""The booking bot's texts. The bot speaks Russian to everyone (the shop's language): the same
Russian catalog is registered under every language, and it also overrides the runtime's own
messages (errors, throttling), so nothing falls back to English."""

from __future__ import annotations

from collections.abc import Mapping

from bots.runtime.i18n import LANGUAGES, RUNTIME_MESSAGES, Messages

__all__ = ["BUTTONS", "MESSAGES", "REASONS", "RU"]

#: Reply-keyboard buttons (their text is what the bot receives when pressed).
BUTTONS: Mapping[str, str] = {
    "book": "Записаться",
    "my": "Моя запись",
    "today": "Сегодня",
    "week": "Неделя",
    "day_off": "Выходной",
    "lunch": "Обед",
    "manual": "Ручная запись",
    "help": "Помощь",
}

_BOOKING_RU: dict[str, str] = {
    # menus
    "start.client": (
        "Здравствуйте! Я помогу записаться в барбершоп.\n"
        "Нажмите «Записаться», чтобы выбрать мастера, услугу и время, "
        "или «Моя запись», чтобы посмотреть или отменить запись."
    ),
    "start.master": (
        "Здравствуйте, {name}! Вы мастер.\n"
        "«Сегодня» и «Неделя» — ваше расписание, там же можно отменить запись; "
        "«Выходной», «Обед» и «Ручная запись» — управление временем. "
        "Записаться как клиент тоже можно."
    ),
    "help.client": (
        "Что я умею:\n"
        "«Записаться» — мастер → услуга → дата → время → подтверждение;\n"
        "«Моя запись» — ваша запись и её отмена."
    ),
    "help.master": (
        "Для мастера:\n"
        "«Сегодня», «Неделя» — расписание и отмена записей (с причиной);\n"
        "«Выходной» — отметить день выходным или снова рабочим;\n"
        "«Обед» — изменить или убрать обеденный перерыв;\n"
        "«Ручная запись» — записать клиента, который обратился не через бота."
    ),
    "unknown": "Не понял. Выберите действие в меню внизу.",
    "stale": "Кнопка устарела. Откройте меню заново.",
    "master_only": "Эта функция доступна только мастерам. Чтобы записаться, нажмите «Записаться».",
    # client flow
    "book.choose_master": "Выберите мастера:",
    "book.no_masters": "Сейчас нет мастеров, к которым можно записаться.",
    "book.choose_service": "Мастер: {master}\nВыберите услугу:",
    "book.no_services": "Сейчас нет услуг для записи.",
    "book.choose_date": "Мастер: {master}\nУслуга: {service}\nВыберите дату:",
    "book.no_dates": (
        "У мастера {master} нет свободного времени в ближайшие {days} дней. "
        "Выберите другого мастера."
    ),
    "book.choose_slot": "Мастер: {master}\nУслуга: {service}\nДата: {date}\nВыберите время:",
    "book.no_slots": "На {date} свободного времени уже нет. Выберите другую дату.",
    "book.slot_gone": "Это время уже занято. Выберите другое.",
    "book.confirm": "Проверьте запись:\n{booking}\n\nПодтвердить?",
    "book.done": (
        "Готово, вы записаны!\n{booking}\n\n"
        "Подтверждение придёт отдельным сообщением, перед визитом — напоминание."
    ),
    "book.already": (
        "У вас уже есть запись:\n{booking}\n\n"
        "Чтобы записаться на другое время, сначала отмените её."
    ),
    "book.aborted": "Запись не оформлена.",
    # the client's booking
    "my.none": "У вас нет активной записи. Нажмите «Записаться».",
    "my.booking": "Ваша запись:\n{booking}",
    "my.cancel_ask": "Отменить запись?\n{booking}",
    "my.cancelled": "Запись отменена.\n{booking}",
    # booking details
    "booking.master": "Мастер: {master}",
    "booking.service": "Услуга: {service} ({duration} мин)",
    "booking.when": "Когда: {when}",
    "booking.price": "Стоимость: {price}",
    "booking.client": "Клиент: {client}",
    "booking.phone": "Телефон: {phone}",
    "booking.cancelled": "Отменена{by}{reason}",
    "booking.cancelled_by_client": " клиентом",
    "booking.cancelled_by_master": " мастером",
    "booking.cancel_reason": ": {reason}",
    # the master's schedule
    "schedule.day": "Расписание на {date}:",
    "schedule.week": "Расписание на неделю, {start} – {end}:",
    "schedule.empty": "Записей нет.",
    "schedule.line": "{start}–{end} {client} · {service}",
    "schedule.line_phone": "{start}–{end} {client} ({phone}) · {service}",
    "schedule.cancelled_mark": " (отменена)",
    "schedule.cancel_button": "Отменить {start} {client}",
    "schedule.more": "…и ещё записи: откройте день, чтобы увидеть все.",
    # master: cancel with a reason
    "master.cancel_ask": (
        "Отмена записи:\n{booking}\n\n"
        "Напишите причину отмены — клиент увидит её в уведомлении. "
        "Чтобы не отменять, выберите любой пункт меню."
    ),
    "master.reason_empty": "Причина не может быть пустой. Напишите причину отмены.",
    "master.reason_long": "Причина слишком длинная: не больше {max} символов.",
    "master.cancelled": "Запись отменена. Клиент получит уведомление с причиной.\n{booking}",
    "master.cancelled_manual": "Запись отменена.\n{booking}",
    # master: days off
    "dayoff.title": (
        "Выходные. Нажмите на дату, чтобы сделать её выходной, "
        "или на выходной (🚫), чтобы сделать его снова рабочим:"
    ),
    "dayoff.set": "{date} — теперь выходной.",
    "dayoff.deleted": "{date} — снова рабочий день.",
    "dayoff.has_bookings": "На {date} есть записи ({count}). Сначала отмените их.",
    # master: lunch
    "lunch.current": "Обед сейчас: {lunch}.\nВыберите новое время:",
    "lunch.none": "Обеда сейчас нет.\nВыберите время обеда:",
    "lunch.set": "Обед: {lunch}.",
    "lunch.cleared": "Обеденный перерыв убран.",
    "lunch.ask": "Напишите время обеда, например 13:30-14:15.",
    "lunch.bad": "Не понял время. Пример: 13:30-14:15 (начало раньше конца).",
    # master: manual booking
    "manual.choose_service": "Ручная запись. Выберите услугу:",
    "manual.choose_date": "Ручная запись: {service}\nВыберите дату:",
    "manual.no_dates": "Свободного времени в ближайшие {days} дней нет.",
    "manual.choose_slot": "Ручная запись: {service}\nДата: {date}\nВыберите время:",
    "manual.ask_name": "Ручная запись: {service}, {when}.\nНапишите имя клиента.",
    "manual.bad_name": "Имя должно быть от 1 до {max} символов. Напишите имя клиента.",
    "manual.ask_phone": "Телефон клиента (например, +7 900 123-45-67):",
    "manual.bad_phone": "Не похоже на телефон. Пример: +7 900 123-45-67.",
    "manual.confirm": "Проверьте ручную запись:\n{booking}\n\nПодтвердить?",
    "manual.done": "Ручная запись создана:\n{booking}",
    "manual.expired": "Эта ручная запись устарела. Начните заново: «Ручная запись».",
    # buttons
    "button.confirm": "✅ Подтвердить",
    "button.back": "« Назад",
    "button.cancel_flow": "✖ Не записываться",
    "button.cancel_booking": "Отменить запись",
    "button.yes_cancel": "Да, отменить",
    "button.no_keep": "Нет, оставить",
    "button.book": "Записаться",
    "button.lunch_clear": "Без обеда",
    "button.lunch_other": "Другое время…",
    "button.prev_day": "‹ {date}",
    "button.next_day": "{date} ›",
    # commands (setMyCommands)
    "command.start": "Главное меню",
    "command.book": "Записаться",
    "command.my": "Моя запись",
    "command.help": "Помощь",
    # server refusals (ErrorInfo reasons)
    "reason.master_not_found": "Мастер не найден или больше не принимает записи.",
    "reason.service_not_found": "Эта услуга сейчас недоступна.",
    "reason.booking_not_found": "Запись не найдена.",
    "reason.slot_taken": "Это время только что заняли. Выберите другое.",
    "reason.slot_unavailable": "Это время недоступно для записи. Выберите другое.",
    "reason.slot_in_past": "Это время уже прошло. Выберите другое.",
    "reason.active_booking_exists": (
        "У вас уже есть запись. Отмените её в «Моя запись», чтобы записаться снова."
    ),
    "reason.idempotency_key_reused": "Этот запрос уже обработан. Начните заново.",
    "reason.booking_not_active": "Эта запись уже отменена или завершена.",
    "reason.day_has_bookings": "В этот день есть записи. Сначала отмените их.",
    "reason.lunch_overlaps_bookings": (
        "Это время обеда пересекается с записями. Сначала отмените их или выберите другое."
    ),
    "reason.cancel_reason_required": "Укажите причину отмены.",
    "reason.invalid_time_range": "Неверный интервал времени.",
    "reason.invalid_fields": "Проверьте данные: например, дата не может быть в прошлом.",
    "reason.not_your_booking": "Это не ваша запись.",
}

#: Everything the bot says, in Russian (the runtime's Russian texts included).
RU: Mapping[str, str] = {**RUNTIME_MESSAGES["ru"], **_BOOKING_RU}

MESSAGES: Messages = {language: RU for language in LANGUAGES}

#: Server ErrorInfo reasons (booking.switchboard.dev, and the pipeline's) -> message keys.
REASONS: Mapping[str, str] = {
    "MASTER_NOT_FOUND": "reason.master_not_found",
    "SERVICE_NOT_FOUND": "reason.service_not_found",
    "BOOKING_NOT_FOUND": "reason.booking_not_found",
    "SLOT_TAKEN": "reason.slot_taken",
    "SLOT_UNAVAILABLE": "reason.slot_unavailable",
    "SLOT_IN_PAST": "reason.slot_in_past",
    "ACTIVE_BOOKING_EXISTS": "reason.active_booking_exists",
    "IDEMPOTENCY_KEY_REUSED": "reason.idempotency_key_reused",
    "BOOKING_NOT_ACTIVE": "reason.booking_not_active",
    "DAY_HAS_BOOKINGS": "reason.day_has_bookings",
    "LUNCH_OVERLAPS_BOOKINGS": "reason.lunch_overlaps_bookings",
    "CANCEL_REASON_REQUIRED": "reason.cancel_reason_required",
    "INVALID_TIME_RANGE": "reason.invalid_time_range",
    "INVALID_FIELDS": "reason.invalid_fields",
    "NOT_YOUR_BOOKING": "reason.not_your_booking",
    "NOT_A_MASTER": "master_only",
    # The access policy refusing a MasterService call (the "booking.master" role).
    "ACCESS_DENIED": "master_only",
}
