"""Every text the run report shows, in Russian and English.

The admissions staff read Russian; operators may read either. ``PROBLEMS`` holds,
per language and problem code, a heading in plain words, a sentence about one
occurrence (``str.format`` placeholders filled from ``Problem.params``) and what to
do about the kind. ``LABELS`` holds table headings and other fixed words,
``COUNTS`` the names of ``RunSummary.counts`` keys. Both languages must have the
same keys and the same placeholders (``tests/report`` checks).

Conventions: ``text`` is plain (it is escaped as a whole in every format);
``advice`` may hold `backtick` spans, shown as code in HTML and Markdown.
"""
from __future__ import annotations

from typing import NamedTuple

LANGUAGES = ("ru", "en")


class ProblemMessage(NamedTuple):
    title: str
    text: str
    advice: str


# How serious each known code is when only its count is known (a run without a kept plan).
SEVERITY: dict[str, str] = {
    "missing_email": "attention",
    "invalid_email": "attention",
    "unknown_poll": "attention",
    "unknown_programme": "attention",
    "ambiguous_programme": "attention",
    "alias_target_missing": "attention",
    "all_programmes_unknown": "attention",
    "invalid_record": "attention",
    "invalid_phone": "warning",
    "unknown_enum_value": "warning",
    "invalid_value": "warning",
    "unknown_owner": "warning",
    "inactive_owner": "warning",
    "programme_normalised": "info",
    "programme_alias": "info",
    "no_programme": "info",
    "duplicate_contacts": "info",
    "value_cut": "warning",
    "unregistered_poll": "warning",
    "inactive_programme": "warning",
}

_RETRY_RU = "затем запустите `cli.py retry`."
_RETRY_EN = "then run `cli.py retry`."

PROBLEMS: dict[str, dict[str, ProblemMessage]] = {
    "ru": {
        "missing_email": ProblemMessage(
            "Нет e-mail",
            "E-mail не указан: контакт нельзя найти или создать.",
            "Свяжитесь с респондентом другим способом и внесите контакт в Bitrix24 вручную; если ответ "
            "исправят на платформе опросов, следующая синхронизация его подхватит."),
        "invalid_email": ProblemMessage(
            "Неверный e-mail",
            "E-mail «{value}» не является корректным адресом: контакт нельзя найти или создать.",
            "Уточните адрес у респондента и исправьте ответ на платформе опросов (следующая синхронизация "
            "подхватит правку) или внесите контакт в Bitrix24 вручную."),
        "invalid_phone": ProblemMessage(
            "Неверный телефон",
            "Телефон «{value}» не распознан как номер; контакт сохраняется без него.",
            "Для синхронизации ничего делать не нужно; если знаете верный номер, добавьте его в контакт "
            "в Bitrix24."),
        "unknown_poll": ProblemMessage(
            "Неизвестный опрос",
            "Опрос {poll_id} не найден: для него нет опросной формы в CRM.",
            "Синхронизируйте этот опрос (`cli.py sync --poll <ID опроса>`), " + _RETRY_RU),
        "unknown_programme": ProblemMessage(
            "Программа не найдена в CRM",
            "Программы «{given}» нет в CRM; сделка по ней не создаётся.",
            "Добавьте программу в смарт-процесс программ в Bitrix24 или псевдоним (alias) в "
            "field_mapping.json, " + _RETRY_RU),
        "ambiguous_programme": ProblemMessage(
            "Неоднозначное название программы",
            "Программа «{given}» подходит к нескольким программам CRM: {candidates}; сделка по ней не создаётся.",
            "Сделайте названия программ в смарт-процессе уникальными или добавьте в field_mapping.json "
            "псевдоним с ID нужной программы, " + _RETRY_RU),
        "alias_target_missing": ProblemMessage(
            "Псевдоним ведёт на несуществующую программу",
            "Для «{given}» задан псевдоним «{target}», но такой программы нет в CRM.",
            "Исправьте псевдоним в field_mapping.json (укажите название или ID существующей программы) "
            "или добавьте программу в Bitrix24, " + _RETRY_RU),
        "all_programmes_unknown": ProblemMessage(
            "Ни одна выбранная программа не найдена",
            "Ни одна из выбранных программ не найдена в CRM ({given}): ни контакт, ни сделки не создаются.",
            "Исправьте программы (см. группы «Программа не найдена в CRM» и про псевдонимы), " + _RETRY_RU),
        "programme_normalised": ProblemMessage(
            "Название программы распознано неточно",
            "Программа «{given}» распознана как «{programme}» (отличаются пробелы или регистр).",
            "Ничего делать не нужно. Чтобы замечание исчезло, исправьте текст варианта ответа в опросе."),
        "programme_alias": ProblemMessage(
            "Программа сопоставлена по псевдониму",
            "Программа «{given}» сопоставлена с «{programme}» по псевдониму.",
            "Ничего делать не нужно."),
        "no_programme": ProblemMessage(
            "Программа не выбрана",
            "Программа не выбрана: создаётся одна сделка без программы.",
            "Ничего делать не нужно; при необходимости укажите программу в сделке в Bitrix24."),
        "duplicate_contacts": ProblemMessage(
            "Дубли контактов в CRM",
            "У нескольких контактов CRM один и тот же e-mail (ID {contact_ids}); использован контакт {chosen} "
            "(с наименьшим ID).",
            "Объедините дубли в Bitrix24 (CRM → Контакты → Поиск дубликатов)."),
        "unknown_enum_value": ProblemMessage(
            "Значение не из списка",
            "Ответ «{value}» для поля {field} не входит в список допустимых ({known}); поле оставлено пустым.",
            "Добавьте значение в список поля в Bitrix24 и в раздел `enumerations` файла field_mapping.json; "
            "в уже созданных сделках заполните поле вручную."),
        "unregistered_poll": ProblemMessage(
            "Опрос не зарегистрирован",
            "Ответы пришли на опрос {poll_id}, который портал не регистрировал: опросная форма создана по номеру, "
            "ответственный — пользователь {default_user_id}.",
            "Попросите администратора портала заново включить интеграцию для опроса: название и ответственный "
            "обновятся сами."),
        "value_cut": ProblemMessage(
            "Значение обрезано",
            "Поле «{field}» в Битрикс24 вмещает {kept} символов, а в ответе их {length}: записаны первые {kept}.",
            "Проверьте значение в карточке; полный текст ответа есть в комментарии к сделке."),
        "inactive_programme": ProblemMessage(
            "Программа неактивна",
            "Программа «{programme}» (элемент {programme_id}) есть в списке только как неактивная; сделка связана с ней.",
            "Если программа снова набирает, сделайте элемент активным; иначе свяжите сделку с нужной программой вручную."),
        "invalid_value": ProblemMessage(
            "Ответ в неожиданном виде",
            "Ответ на вопрос «{question}» (поле «{field}») имеет неожиданный вид и пропущен.",
            "Проверьте, что тип вопроса в опросе соответствует field_mapping.json."),
        "unknown_owner": ProblemMessage(
            "Автор опроса не найден в Bitrix24",
            "Автор опроса {employee_email} не найден среди пользователей Bitrix24; ответственным назначен "
            "пользователь {default_user_id}.",
            "Исправьте e-mail сотрудника в опросе на платформе опросов или заведите пользователя в Bitrix24; "
            "при необходимости переназначьте опросную форму и её сделки."),
        "inactive_owner": ProblemMessage(
            "Автор опроса отключён в Bitrix24",
            "Автор опроса {employee_email} (пользователь {user_id}) отключён в Bitrix24; ответственным назначен "
            "пользователь {default_user_id}.",
            "Передайте опрос активному сотруднику на платформе опросов или переназначьте опросную форму "
            "и её сделки в Bitrix24."),
        "invalid_record": ProblemMessage(
            "Нечитаемая запись",
            "Платформа опросов прислала запись, которую не удалось прочитать: {error}.",
            "Сообщите в поддержку платформы опросов ID ответа из журнала запуска; запись сохранена "
            "как требующая внимания."),
    },
    "en": {
        "missing_email": ProblemMessage(
            "No e-mail address",
            "No e-mail given: the contact cannot be found or created.",
            "Reach the respondent another way and add the contact in Bitrix24 by hand; if the answer is "
            "corrected on the survey platform, the next sync picks it up."),
        "invalid_email": ProblemMessage(
            "Invalid e-mail address",
            "E-mail '{value}' is not a valid address: the contact cannot be found or created.",
            "Check the address with the respondent and correct the answer on the survey platform (the next "
            "sync picks up the edit), or add the contact in Bitrix24 by hand."),
        "invalid_phone": ProblemMessage(
            "Invalid phone number",
            "Phone '{value}' is not a valid number; the contact is kept without it.",
            "Nothing to do for the sync; if you know the right number, add it to the contact in Bitrix24."),
        "unknown_poll": ProblemMessage(
            "Unknown poll",
            "Poll {poll_id} is not known: it has no poll form in the CRM.",
            "Sync that poll (`cli.py sync --poll <poll id>`), " + _RETRY_EN),
        "unknown_programme": ProblemMessage(
            "Programme not in the CRM",
            "Programme '{given}' is not in the CRM; no deal is made for it.",
            "Add the programme to the programmes smart process in Bitrix24 or an alias in "
            "field_mapping.json, " + _RETRY_EN),
        "ambiguous_programme": ProblemMessage(
            "Ambiguous programme name",
            "Programme '{given}' matches several CRM programmes: {candidates}; no deal is made for it.",
            "Make the programme titles in the smart process unique, or add an alias in field_mapping.json "
            "pointing at the right programme's ID, " + _RETRY_EN),
        "alias_target_missing": ProblemMessage(
            "Alias points to a missing programme",
            "'{given}' has the alias '{target}', but no such programme is in the CRM.",
            "Fix the alias in field_mapping.json (use the title or ID of an existing programme) or add the "
            "programme in Bitrix24, " + _RETRY_EN),
        "all_programmes_unknown": ProblemMessage(
            "None of the chosen programmes found",
            "None of the chosen programmes is in the CRM ({given}): no contact or deal is made.",
            "Fix the programmes (see the groups 'Programme not in the CRM' and about aliases), " + _RETRY_EN),
        "programme_normalised": ProblemMessage(
            "Programme name matched loosely",
            "Programme '{given}' was read as '{programme}' (spacing or case differ).",
            "Nothing to do. To silence this note, correct the option's text in the poll."),
        "programme_alias": ProblemMessage(
            "Programme matched by an alias",
            "Programme '{given}' was matched to '{programme}' by an alias.",
            "Nothing to do."),
        "no_programme": ProblemMessage(
            "No programme chosen",
            "No programme chosen: one deal without a programme is made.",
            "Nothing to do; set the programme on the deal in Bitrix24 if needed."),
        "duplicate_contacts": ProblemMessage(
            "Duplicate contacts in the CRM",
            "Several CRM contacts share this e-mail (IDs {contact_ids}); contact {chosen} (the lowest ID) is used.",
            "Merge the duplicates in Bitrix24 (CRM → Contacts → Find duplicates)."),
        "unknown_enum_value": ProblemMessage(
            "Value not in the list",
            "Answer '{value}' for field {field} is not one of the allowed values ({known}); the field is left empty.",
            "Add the value to the field's list in Bitrix24 and to `enumerations` in field_mapping.json; fill "
            "the field by hand on deals already made."),
        "unregistered_poll": ProblemMessage(
            "Poll not registered",
            "Answers came for poll {poll_id}, which the portal never registered: its form was made from the id, "
            "owned by user {default_user_id}.",
            "Ask the portal's administrator to switch the integration off and on for the poll: the name and "
            "owner then update by themselves."),
        "value_cut": ProblemMessage(
            "Value cut",
            "Field {field} holds {kept} characters in Bitrix24; the answer had {length}: the first {kept} were written.",
            "Check the value on the record; the whole answer is in the deal's comment."),
        "inactive_programme": ProblemMessage(
            "Inactive programme",
            "Programme '{programme}' (element {programme_id}) exists only as inactive; the deal is linked to it.",
            "If the programme admits again, make its element active; otherwise link the deal to the right programme."),
        "invalid_value": ProblemMessage(
            "Answer in an unexpected form",
            "The answer to question '{question}' (field {field}) has an unexpected form and was skipped.",
            "Check that the question's type in the poll matches field_mapping.json."),
        "unknown_owner": ProblemMessage(
            "Poll owner not in Bitrix24",
            "Poll owner {employee_email} is not a Bitrix24 user; user {default_user_id} is made responsible.",
            "Correct the employee e-mail of the poll on the survey platform or create the user in Bitrix24; "
            "reassign the poll form and its deals if needed."),
        "inactive_owner": ProblemMessage(
            "Poll owner deactivated in Bitrix24",
            "Poll owner {employee_email} (user {user_id}) is deactivated in Bitrix24; user {default_user_id} "
            "is made responsible.",
            "Hand the poll to an active employee on the survey platform, or reassign the poll form and its "
            "deals in Bitrix24."),
        "invalid_record": ProblemMessage(
            "Unreadable record",
            "The survey platform sent a record that could not be read: {error}.",
            "Report the answer ID from the run's log to the survey platform's support; the record is kept "
            "as needing attention."),
    },
}

# A code this module does not know yet (a newer planner): shown by code and params.
GENERIC: dict[str, ProblemMessage] = {
    "ru": ProblemMessage("Прочее: {code}", "Проблема «{code}»: {params}.",
                         "Подробности — в журнале запуска."),
    "en": ProblemMessage("Other: {code}", "Problem '{code}': {params}.", "See the run's log for details."),
}

# Values of ``params["field"]`` worth saying in words; anything else (a CRM field code) is shown as is.
FIELD_NAMES: dict[str, dict[str, str]] = {
    "ru": {"first_name": "имя", "last_name": "фамилия", "middle_name": "отчество", "programmes": "программы",
           "NAME": "имя", "LAST_NAME": "фамилия", "SECOND_NAME": "отчество", "PHONE": "телефон",
           "EMAIL": "e-mail"},
    "en": {"first_name": "first name", "last_name": "last name", "middle_name": "middle name",
           "programmes": "programmes", "NAME": "first name", "LAST_NAME": "last name",
           "SECOND_NAME": "middle name", "PHONE": "phone", "EMAIL": "e-mail"},
}

COUNTS: dict[str, dict[str, str]] = {
    "ru": {
        "polls_seen": "Прочитано опросов",
        "answers_seen": "Прочитано ответов",
        "new": "Новых ответов",
        "changed": "Изменённых ответов",
        "unchanged": "Ответов без изменений",
        "planned": "Ответов в плане",
        "ready": "Готовы к синхронизации",
        "pushed": "Ответов синхронизировано",
        "needs_attention": "Требуют внимания",
        "failed": "Ответов не записано (будут повторены)",
        "unknown": "Исход записи неизвестен",
        "poll_forms_to_create": "Опросных форм к созданию",
        "poll_forms_to_update": "Опросных форм к обновлению",
        "poll_forms_created": "Создано опросных форм",
        "poll_forms_updated": "Обновлено опросных форм",
        "poll_forms_failed": "Опросных форм не записано",
        "poll_form_add_planned": "Опросных форм к созданию",
        "poll_form_update_planned": "Опросных форм к обновлению",
        "contact_add_planned": "Контактов к созданию",
        "contact_update_planned": "Контактов к дополнению",
        "deal_add_planned": "Сделок к созданию",
        "deal_update_planned": "Сделок к обновлению",
        "contacts_created": "Создано контактов",
        "contacts_updated": "Дополнено контактов",
        "deals_created": "Создано сделок",
        "deals_updated": "Обновлено сделок",
        "summaries_added": "Добавлено сводок ответов в сделки",
        "poll_forms_found": "Найдено уже созданных опросных форм",
    },
    "en": {
        "polls_seen": "Polls read",
        "answers_seen": "Answers read",
        "new": "New answers",
        "changed": "Changed answers",
        "unchanged": "Unchanged answers",
        "planned": "Answers planned",
        "ready": "Answers ready to sync",
        "pushed": "Answers synced",
        "needs_attention": "Answers needing attention",
        "failed": "Answers not written (will be retried)",
        "unknown": "Answers whose write outcome is unknown",
        "poll_forms_to_create": "Poll forms to create",
        "poll_forms_to_update": "Poll forms to update",
        "poll_forms_created": "Poll forms created",
        "poll_forms_updated": "Poll forms updated",
        "poll_forms_failed": "Poll forms not written",
        "poll_form_add_planned": "Poll forms to create",
        "poll_form_update_planned": "Poll forms to update",
        "contact_add_planned": "Contacts to create",
        "contact_update_planned": "Contacts to complete",
        "deal_add_planned": "Deals to create",
        "deal_update_planned": "Deals to update",
        "contacts_created": "Contacts created",
        "contacts_updated": "Contacts completed",
        "deals_created": "Deals created",
        "deals_updated": "Deals updated",
        "summaries_added": "Answer summaries added to deals",
        "poll_forms_found": "Poll forms found already made",
    },
}
