"""Every sentence ``cli.py doctor`` prints, in Russian and English (``REPORT_LANGUAGE``).

The checks build their lines through ``Texts`` (``t("store.ok", shown=..., current=...)``);
nothing else in the package writes prose. Check ids (``Check.name``: ``"deal stage"``)
stay English — they are ``--json``'s stable keys and what code compares — and only their
titles are translated. Setting names, field codes, method names and URLs are written as
they are in both languages. Error texts of exceptions (``one_line(exc)``) are not ours and
pass through unchanged.

``language_from_env()`` reads ``REPORT_LANGUAGE`` the way the settings do (the
environment, then ``.env`` in the working directory), for when the settings themselves
cannot be loaded — the doctor's first line, and ``cli.py``'s error prefixes.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

LANGUAGES = ("ru", "en")
DEFAULT_LANGUAGE = "ru"  # as sync.settings.Settings.report_language

TITLES: dict[str, dict[str, str]] = {
    "en": {},  # the check id is its English title
    "ru": {
        "configuration": "настройки",
        "mapping file": "файл сопоставления",
        "survey API": "API опросов",
        "Bitrix24 webhook": "вебхук Битрикс24",
        "Bitrix24 scopes": "права вебхука",
        "deal fields": "поля сделки",
        "deal pipeline": "воронка сделок",
        "deal stage": "стадия сделки",
        "deal source": "источник сделки",
        "contact fields": "поля контакта",
        "poll forms": "опросные формы",
        "programmes": "программы",
        "default responsible user": "ответственный по умолчанию",
        "store": "хранилище",
        "lists scope": "право на списки",
        "poll form list": "список опросных форм",
        "programme list": "список программ",
        "deal programme link": "привязка сделки к программе",
    },
}

# lists.field.get TYPE values, as the lists module names them.
TYPE_WORDS: dict[str, dict[str, str]] = {
    "en": {"NAME": "the element's name", "S": "string", "N": "number", "S:employee": "employee (user)",
           "L": "list", "E": "link to elements", "E:EList": "link to elements", "F": "file",
           "S:Date": "date", "S:DateTime": "date and time"},
    "ru": {"NAME": "название элемента", "S": "строка", "N": "число", "S:employee": "сотрудник (пользователь)",
           "L": "список", "E": "привязка к элементам", "E:EList": "привязка к элементам", "F": "файл",
           "S:Date": "дата", "S:DateTime": "дата и время"},
}

_EN: dict[str, str] = {
    # the checklist
    "mark.ok": "OK", "mark.fail": "FAIL", "mark.skip": "SKIP",
    "skipped": "skipped: {reason}",
    "needs.failed": "{title} failed",
    "needs.skipped": "{title} was skipped",
    "similar": " (did you mean {name}?)",
    "none": "none",
    "or": " or ",
    "and": " and ",
    "config_incomplete": "the configuration is incomplete",
    "again": "run doctor again",
    # configuration and the mapping file
    "settings.missing": "{name} is not set{hint}",
    "settings.webhook_unset": "BITRIX24_WEBHOOK_URL is not set (the inbound webhook URL, "
                              "https://<portal>.bitrix24.ru/rest/<user_id>/<secret>/)",
    "settings.fix_set": "set {names} in the environment or in .env in the working directory "
                        "(see README, 'Configuration')",
    "settings.fix_any": "fix the settings in the environment or in .env in the working directory "
                        "(see README, 'Configuration')",
    "settings.ok": "every setting is present; store {store}",
    "mapping.fix": "correct {file} (FIELD_MAPPING); the repository's field_mapping.json is a working example",
    "mapping.ok": "{file} is valid (source {source})",
    # the survey API
    "survey.intake": "SURVEY_SOURCE is intake: answers come from the intake's inbox, not the survey API",
    "survey.fix_config": "correct SURVEY_API_URL / SURVEY_API_TOKEN",
    "survey.at": "at {where}: {error}",
    "survey.fix_token": "check SURVEY_API_TOKEN (the platform's API token, without 'Bearer')",
    "survey.fix_url": "check SURVEY_API_URL: it should be the API's base URL, e.g. https://surveys.example.edu/api/v1",
    "survey.fix_reach": "check SURVEY_API_URL and that this machine reaches it (proxy, firewall, DNS); "
                        "run doctor again",
    "survey.ok_polls": "GET /polls?limit=1 answered at {where}: polls are visible",
    "survey.ok_empty": "GET /polls?limit=1 answered at {where}: the token works, no polls yet",
    # the Bitrix24 webhook and its scopes
    "webhook.unset": "BITRIX24_WEBHOOK_URL is not set",
    "webhook.fix_url": "correct BITRIX24_WEBHOOK_URL",
    "webhook.fix": "create an inbound webhook (Developer resources → Other → Inbound webhook) with the crm and user "
                   "scopes, or check the existing one, and put its URL in BITRIX24_WEBHOOK_URL",
    "webhook.fix_reach": "check BITRIX24_WEBHOOK_URL's portal address and that this machine reaches it; "
                         "run doctor again",
    "webhook.inactive": "the webhook at {url} works, but its user is inactive (profile is empty)",
    "webhook.fix_inactive": "create the webhook as an active employee and put its URL in BITRIX24_WEBHOOK_URL",
    "webhook.owner": ", as user {id} {name}",
    "webhook.ok": "{url} answered server.time ({time}){owner}",
    "scopes.failed": "the scope method failed: {error}",
    "scopes.lacks_one": "the webhook lacks the {names} scope (it has: {have})",
    "scopes.lacks_many": "the webhook lacks the {names} scopes (it has: {have})",
    "scopes.fix": "tick {names} on the inbound webhook (Developer resources → Integrations → your webhook → "
                  "Permissions) and save; the URL stays the same",
    "scopes.ok": "the webhook has {required} (all: {have})",
    # the mapping against the portal
    "portal.refused": "Bitrix24 refused a look-up: {error}",
    "portal.failed": "Bitrix24 look-up failed: {error}",
    "portal.fix_again": "run doctor again once Bitrix24 answers",
    "skip.unusable": "Bitrix24 is not usable",
    "skip.scope": "the webhook lacks the '{scope}' scope",
    "entity.deals": "deals",
    "entity.contacts": "contacts",
    "entity.smart_process": "smart process {id}",
    "field.missing": "{path}: {code} is not a field of {entity} ({where}){hint}",
    "field.fix_missing": "correct {path} in {file}, or {create}",
    "field.original": "{path}: {code} is the field's original name; crm.item methods call it {upper}",
    "field.fix_original": "write {upper} in {file} ({path})",
    "field.type": "{path}: {code} is of type {type}, but {source} needs {expected}",
    "field.fix_type": "map {source} to a {expected} field in {file}, or change the field's type on the portal",
    "field.status": "{path}: {value} is not in {entity} (crm.status.list: {known}){hint}",
    "field.fix_status": "use one of the {entity} codes in {path} in {file}",
    "deal.external_key": "{code} (the external key)",
    "deal.parent": "{path}: {code} links to entity type {other}, but {section}.entity_type_id is {etid}",
    "deal.fix_parent": "make {path} PARENT_ID_<{section}.entity_type_id> in {file}",
    "deal.create": "create the user field in CRM → Deals → Settings → Custom fields",
    "enum.not_enum": "{path}: {code} is of type {type}, not enumeration",
    "enum.fix_not_enum": "map {path} to a list (enumeration) field in {file}",
    "enum.item": "{path}.values[{answer}]: item ID {item} is not an item of {code} (items: {items})",
    "enum.fix_item": "use the item IDs of {code} (crm.deal.fields) in {path}.values in {file}",
    "deal.ok": "all {n} deal fields the mapping names exist with compatible types",
    "pipeline.default": "default",
    "pipeline.ok": "deal.category_id {id} is the pipeline «{name}»",
    "pipeline.missing": "deal.category_id {id} is not a deal pipeline on the portal (crm.category.list: {listed})",
    "pipeline.fix": "set deal.category_id in {file} to one of these IDs",
    "stage.ok": "deal.stage_id {id} is «{name}» ({entity})",
    "stage.missing": "deal.stage_id {id} is not a stage of pipeline {category} (crm.status.list {entity}: "
                     "{listed}){hint}",
    "stage.fix": "set deal.stage_id in {file} to one of these",
    "source.unset": "deal.source_id is not set (the portal's default source is used)",
    "source.ok": "deal.source_id {id} is «{name}»",
    "source.missing": "deal.source_id {id} is not a source on the portal (crm.status.list SOURCE: {listed}){hint}",
    "source.fix": "set deal.source_id in {file} to one of these, or add the source in CRM settings",
    "contact.create": "create the user field in CRM → Contacts → Settings → Custom fields",
    "contact.ok": "all {n} contact fields the mapping names exist with compatible types",
    "sp.missing": "{section}.entity_type_id {etid}: there is no smart process with this entityTypeId "
                  "(crm.item.fields: NOT_FOUND)",
    "sp.known": "; the portal has {known}",
    "sp.fix": "set {section}.entity_type_id in {file} to the smart process's entityTypeId "
              "(CRM → Smart processes, or crm.type.list)",
    "sp.create": "create the field in the smart process {etid}",
    "sp.ok_many": "smart process {etid} has all {n} fields the mapping names",
    "sp.ok_one": "smart process {etid} has the field the mapping names",
    "poll_forms.in_list": "poll forms live in universal list {id}: see '{title}'",
    "programmes.in_list": "programmes live in universal list {id}: see '{title}'",
    "user.fix": "set default_responsible_user_id in {file} to an active employee's ID (Company → Employees)",
    "user.missing": "default_responsible_user_id {id}: there is no such user on the portal (user.get)",
    "user.no_name": "no name",
    "user.inactive": "default_responsible_user_id {id} ({name}) is inactive (dismissed)",
    "user.ok": "default_responsible_user_id {id} is {name}, active",
    # the store
    "store.cannot_create": "no store yet at {path}, and it cannot be created: {ancestor} is not a writable directory",
    "store.fix_create": "point DATABASE_URL at a writable place, or fix the directory's permissions",
    "store.fresh": "no store yet at {path}: the first run (or `python cli.py status`) creates it "
                   "(if one should exist already, check DATABASE_URL and the working directory)",
    "store.fix_server": "check DATABASE_URL and that the database server is up",
    "store.empty": "{shown} answers and has no schema yet: the first run (or `python cli.py status`) creates it "
                   "at revision {head}",
    "store.behind": "{shown} is at schema revision {current}, the code expects {head}",
    "store.fix_behind": "run `python cli.py status` to migrate it; if the store is newer than the code, deploy the "
                        "newer code",
    "store.ok": "{shown} answers, schema at revision {current}",
    # universal lists
    "lists.place": "Lists → the list → List settings → Fields",
    "lists.where": "universal list {id} ({section}.iblock_id, type {type})",
    "lists.missing": "{section}.iblock_id {id}: there is no universal list {id} of type {type} on the portal "
                     "(lists.get; lists of this type: {listed})",
    "lists.fix_missing": "set {section}.iblock_id in {file} to the list's ID (Lists → the list: the number in its "
                         "address), or correct {section}.iblock_type_id",
    "lists.code": " (code {code})",
    "lists.symbolic": " ({code} is the field's symbolic code; the list calls it {fid})",
    "lists.field_missing": "{path}: {code} is not a field of list {id} (lists.field.get: {listed}){hint}",
    "lists.fix_field_missing": "correct {path} in {file} to one of these field IDs, or create the field ({place})",
    "lists.field_type": "{path}: {code} {label} of list {id} is of type {type}, but the job writes {types} there",
    "lists.fix_field_type": "point {path} in {file} at a field of type {types}, or change the field's type ({place})",
    "lists.fix_url": "set poll_form.url_template in {file} (e.g. \"https://portal.example.edu/polls/{{poll_id}}.html\")",
    "lists.fix_required": "fill it from the mapping (poll_form.fields.{fid} = a value source in {file}), or make "
                          "the field optional ({place})",
    "lists.required": "{fid} {label} is required in list {id}, but the job does not fill it: lists.element.add would "
                      "refuse every new poll form",
    "lists.poll_ok": "{where} «{name}» has {n} fields of the right types, and the job fills every required one",
    "lists.value_id": " (the value «{value}» has the ID {id})",
    "lists.not_a_value": "programmes.active_values: {value} is not a value of {field} {label} (values: {listed}){hint}",
    "lists.fix_active": "list the value IDs meaning «active» in programmes.active_values in {file}",
    "lists.active_empty": "programmes.status_field is {field}, but programmes.active_values is empty: the status is "
                          "ignored and every programme counts as active (values: {listed})",
    "lists.fix_active_empty": "list the value IDs meaning «active» in programmes.active_values in {file}, or remove "
                              "programmes.status_field",
    "lists.active": "; active: {shown}",
    "lists.no_status": "programmes.active_values is set, but programmes.status_field is not: every programme counts "
                       "as active",
    "lists.fix_no_status": "set programmes.status_field in {file} to the list's status field (a list-type field, "
                           "lists.field.get)",
    "lists.programme_ok": "{where} «{name}» has the title field {field}{status}",
    "link.unset": "deal.programme_link_field is not set: deals name their programme only in the title",
    "link.create": "create a deal field of type «Привязка к элементам информационных блоков» (iblock_element) on "
                   "list {id} (CRM → Deals → Settings → Custom fields) and put its code in "
                   "deal.programme_link_field in {file}",
    "link.type": "deal.programme_link_field: {code}{label} is of type {type}, not iblock_element: it cannot hold an "
                 "element of list {id}",
    "link.none": "(none)",
    "link.other_list": "deal.programme_link_field: {code}{label} links to list {linked}, but the programmes are list "
                       "{id} (programmes.iblock_id)",
    "link.fix_other_list": "choose list {id} in the field's settings (CRM → Deals → Settings → Custom fields → "
                           "{code}), or point deal.programme_link_field in {file} at the field that links to it",
    "link.ok": "deal.programme_link_field {code}{label} links deals to list {id}",
    "kept.poll_forms": "poll forms",
    "kept.programmes": "programmes",
    "lists_scope.ok": "the mapping keeps {kept} in universal lists (lists.*); the webhook has the 'lists' scope",
    "lists_scope.missing": "the mapping keeps {kept} in universal lists, but the webhook lacks the 'lists' scope "
                           "(it has: {have})",
}

_RU: dict[str, str] = {
    "mark.ok": "ОК", "mark.fail": "ОШИБКА", "mark.skip": "ПРОПУСК",
    "skipped": "пропущено: {reason}",
    "needs.failed": "проверка «{title}» не прошла",
    "needs.skipped": "проверка «{title}» пропущена",
    "similar": " (возможно, имелось в виду {name}?)",
    "none": "нет",
    "or": " или ",
    "and": " и ",
    "config_incomplete": "настройки заданы не полностью",
    "again": "запустите doctor ещё раз",
    "settings.missing": "не задана настройка {name}{hint}",
    "settings.webhook_unset": "не задана настройка BITRIX24_WEBHOOK_URL (адрес входящего вебхука, "
                              "https://<portal>.bitrix24.ru/rest/<user_id>/<secret>/)",
    "settings.fix_set": "задайте {names} в окружении или в .env в рабочем каталоге (см. README, раздел «Configuration»)",
    "settings.fix_any": "исправьте настройки в окружении или в .env в рабочем каталоге "
                        "(см. README, раздел «Configuration»)",
    "settings.ok": "все настройки заданы; хранилище {store}",
    "mapping.fix": "исправьте {file} (FIELD_MAPPING); рабочий пример — field_mapping.json в репозитории",
    "mapping.ok": "{file} в порядке (источник {source})",
    "survey.intake": "SURVEY_SOURCE=intake: ответы приходят во входящий ящик приёмника, а не из API опросов",
    "survey.fix_config": "исправьте SURVEY_API_URL / SURVEY_API_TOKEN",
    "survey.at": "по адресу {where}: {error}",
    "survey.fix_token": "проверьте SURVEY_API_TOKEN (токен API платформы, без «Bearer»)",
    "survey.fix_url": "проверьте SURVEY_API_URL: это должен быть базовый адрес API, например "
                      "https://surveys.example.edu/api/v1",
    "survey.fix_reach": "проверьте SURVEY_API_URL и доступен ли он с этой машины (прокси, межсетевой экран, DNS); "
                        "затем запустите doctor ещё раз",
    "survey.ok_polls": "GET /polls?limit=1 ответил по адресу {where}: опросы видны",
    "survey.ok_empty": "GET /polls?limit=1 ответил по адресу {where}: токен действует, опросов пока нет",
    "webhook.unset": "не задана настройка BITRIX24_WEBHOOK_URL",
    "webhook.fix_url": "исправьте BITRIX24_WEBHOOK_URL",
    "webhook.fix": "создайте входящий вебхук (Разработчикам → Другое → Входящий вебхук) с правами crm и user или "
                   "проверьте существующий и укажите его адрес в BITRIX24_WEBHOOK_URL",
    "webhook.fix_reach": "проверьте адрес портала в BITRIX24_WEBHOOK_URL и доступен ли он с этой машины; "
                         "затем запустите doctor ещё раз",
    "webhook.inactive": "вебхук {url} работает, но его пользователь неактивен (profile пуст)",
    "webhook.fix_inactive": "создайте вебхук от имени активного сотрудника и укажите его адрес в BITRIX24_WEBHOOK_URL",
    "webhook.owner": ", от имени пользователя {id} {name}",
    "webhook.ok": "{url} ответил на server.time ({time}){owner}",
    "scopes.failed": "метод scope не ответил: {error}",
    "scopes.lacks_one": "у вебхука нет права {names} (есть: {have})",
    "scopes.lacks_many": "у вебхука нет прав {names} (есть: {have})",
    "scopes.fix": "отметьте {names} во входящем вебхуке (Разработчикам → Интеграции → ваш вебхук → Настройка прав) "
                  "и сохраните; адрес вебхука не изменится",
    "scopes.ok": "у вебхука есть {required} (все права: {have})",
    "portal.refused": "Битрикс24 отказал в запросе: {error}",
    "portal.failed": "запрос к Битрикс24 не удался: {error}",
    "portal.fix_again": "запустите doctor ещё раз, когда Битрикс24 будет отвечать",
    "skip.unusable": "Битрикс24 недоступен",
    "skip.scope": "у вебхука нет права '{scope}'",
    "entity.deals": "сделок",
    "entity.contacts": "контактов",
    "entity.smart_process": "смарт-процесса {id}",
    "field.missing": "{path}: у {entity} нет поля {code} ({where}){hint}",
    "field.fix_missing": "исправьте {path} в {file} или {create}",
    "field.original": "{path}: {code} — исходное имя поля; методы crm.item называют его {upper}",
    "field.fix_original": "напишите {upper} в {file} ({path})",
    "field.type": "{path}: поле {code} имеет тип {type}, а для {source} нужен {expected}",
    "field.fix_type": "сопоставьте {source} полю типа {expected} в {file} или измените тип поля на портале",
    "field.status": "{path}: {value} нет в {entity} (crm.status.list: {known}){hint}",
    "field.fix_status": "укажите в {path} в {file} один из кодов {entity}",
    "deal.external_key": "{code} (внешний ключ)",
    "deal.parent": "{path}: {code} ссылается на тип сущности {other}, а {section}.entity_type_id равен {etid}",
    "deal.fix_parent": "укажите в {path} в {file} PARENT_ID_<{section}.entity_type_id>",
    "deal.create": "создайте пользовательское поле: CRM → Сделки → Настройки → Пользовательские поля",
    "enum.not_enum": "{path}: поле {code} имеет тип {type}, а не enumeration",
    "enum.fix_not_enum": "сопоставьте {path} полю-списку (enumeration) в {file}",
    "enum.item": "{path}.values[{answer}]: у {code} нет элемента с ID {item} (элементы: {items})",
    "enum.fix_item": "укажите в {path}.values в {file} ID элементов {code} (crm.deal.fields)",
    "deal.ok": "полей сделки в сопоставлении: {n}; все есть на портале, типы совместимы",
    "pipeline.default": "по умолчанию",
    "pipeline.ok": "deal.category_id {id} — воронка «{name}»",
    "pipeline.missing": "deal.category_id {id}: на портале нет такой воронки сделок (crm.category.list: {listed})",
    "pipeline.fix": "укажите в deal.category_id в {file} один из этих ID",
    "stage.ok": "deal.stage_id {id} — «{name}» ({entity})",
    "stage.missing": "deal.stage_id {id}: в воронке {category} нет такой стадии (crm.status.list {entity}: "
                     "{listed}){hint}",
    "stage.fix": "укажите в deal.stage_id в {file} одну из них",
    "source.unset": "deal.source_id не задан (используется источник портала по умолчанию)",
    "source.ok": "deal.source_id {id} — «{name}»",
    "source.missing": "deal.source_id {id}: на портале нет такого источника (crm.status.list SOURCE: "
                      "{listed}){hint}",
    "source.fix": "укажите в deal.source_id в {file} один из них или добавьте источник в настройках CRM",
    "contact.create": "создайте пользовательское поле: CRM → Контакты → Настройки → Пользовательские поля",
    "contact.ok": "полей контакта в сопоставлении: {n}; все есть на портале, типы совместимы",
    "sp.missing": "{section}.entity_type_id {etid}: на портале нет смарт-процесса с таким entityTypeId "
                  "(crm.item.fields: NOT_FOUND)",
    "sp.known": "; на портале есть {known}",
    "sp.fix": "укажите в {section}.entity_type_id в {file} entityTypeId смарт-процесса "
              "(CRM → Смарт-процессы или crm.type.list)",
    "sp.create": "создайте поле в смарт-процессе {etid}",
    "sp.ok_many": "у смарт-процесса {etid} есть все поля из сопоставления ({n})",
    "sp.ok_one": "у смарт-процесса {etid} есть поле из сопоставления",
    "poll_forms.in_list": "опросные формы хранятся в универсальном списке {id}: см. «{title}»",
    "programmes.in_list": "программы хранятся в универсальном списке {id}: см. «{title}»",
    "user.fix": "укажите в default_responsible_user_id в {file} ID активного сотрудника (Компания → Сотрудники)",
    "user.missing": "default_responsible_user_id {id}: на портале нет такого пользователя (user.get)",
    "user.no_name": "без имени",
    "user.inactive": "default_responsible_user_id {id} ({name}) неактивен (уволен)",
    "user.ok": "default_responsible_user_id {id} — {name}, активен",
    "store.cannot_create": "хранилища {path} ещё нет, и создать его нельзя: {ancestor} — не каталог, "
                           "доступный для записи",
    "store.fix_create": "укажите в DATABASE_URL место, доступное для записи, или исправьте права на каталог",
    "store.fresh": "хранилища {path} ещё нет: его создаст первый запуск (или `python cli.py status`); "
                   "если оно уже должно быть, проверьте DATABASE_URL и рабочий каталог",
    "store.fix_server": "проверьте DATABASE_URL и работает ли сервер базы данных",
    "store.empty": "{shown} отвечает, схемы ещё нет: первый запуск (или `python cli.py status`) создаст её "
                   "в ревизии {head}",
    "store.behind": "схема {shown} в ревизии {current}, а код ожидает {head}",
    "store.fix_behind": "запустите `python cli.py status`, чтобы обновить схему; если хранилище новее кода, "
                        "разверните новую версию кода",
    "store.ok": "{shown} отвечает, схема в ревизии {current}",
    "lists.place": "Списки → список → Настройки списка → Поля",
    "lists.where": "универсальный список {id} ({section}.iblock_id, тип {type})",
    "lists.missing": "{section}.iblock_id {id}: на портале нет универсального списка {id} типа {type} "
                     "(lists.get; списки этого типа: {listed})",
    "lists.fix_missing": "укажите в {section}.iblock_id в {file} ID списка (Списки → список: число в его адресе) "
                         "или исправьте {section}.iblock_type_id",
    "lists.code": " (код {code})",
    "lists.symbolic": " ({code} — символьный код поля; в списке оно называется {fid})",
    "lists.field_missing": "{path}: в списке {id} нет поля {code} (lists.field.get: {listed}){hint}",
    "lists.fix_field_missing": "укажите в {path} в {file} один из этих ID полей или создайте поле ({place})",
    "lists.field_type": "{path}: поле {code} {label} списка {id} имеет тип {type}, а задание пишет туда {types}",
    "lists.fix_field_type": "укажите в {path} в {file} поле типа {types} или измените тип поля ({place})",
    "lists.fix_url": "задайте poll_form.url_template в {file} (например, "
                     "\"https://portal.example.edu/polls/{{poll_id}}.html\")",
    "lists.fix_required": "заполняйте его из сопоставления (poll_form.fields.{fid} = источник значения в {file}) "
                          "или сделайте поле необязательным ({place})",
    "lists.required": "поле {fid} {label} обязательно в списке {id}, но задание его не заполняет: "
                      "lists.element.add отклонит каждую новую опросную форму",
    "lists.poll_ok": "{where} «{name}»: полей нужных типов — {n}, все обязательные задание заполняет",
    "lists.value_id": " (у значения «{value}» ID {id})",
    "lists.not_a_value": "programmes.active_values: {value} — не значение поля {field} {label} "
                         "(значения: {listed}){hint}",
    "lists.fix_active": "перечислите в programmes.active_values в {file} ID значений, означающих «активна»",
    "lists.active_empty": "programmes.status_field — {field}, но programmes.active_values пуст: статус не "
                          "учитывается, и все программы считаются активными (значения: {listed})",
    "lists.fix_active_empty": "перечислите в programmes.active_values в {file} ID значений, означающих «активна», "
                              "или уберите programmes.status_field",
    "lists.active": "; активные: {shown}",
    "lists.no_status": "programmes.active_values задан, а programmes.status_field нет: все программы считаются "
                       "активными",
    "lists.fix_no_status": "укажите в programmes.status_field в {file} поле статуса списка (поле типа «список», "
                           "lists.field.get)",
    "lists.programme_ok": "{where} «{name}»: поле названия {field}{status}",
    "link.unset": "deal.programme_link_field не задан: программа указывается только в названии сделки",
    "link.create": "создайте поле сделки типа «Привязка к элементам информационных блоков» (iblock_element) "
                   "со списком {id} (CRM → Сделки → Настройки → Пользовательские поля) и укажите его код в "
                   "deal.programme_link_field в {file}",
    "link.type": "deal.programme_link_field: поле {code}{label} имеет тип {type}, а не iblock_element: "
                 "элемент списка {id} в нём не сохранить",
    "link.none": "(не задан)",
    "link.other_list": "deal.programme_link_field: поле {code}{label} привязано к списку {linked}, а программы — "
                       "в списке {id} (programmes.iblock_id)",
    "link.fix_other_list": "выберите список {id} в настройках поля (CRM → Сделки → Настройки → Пользовательские "
                           "поля → {code}) или укажите в deal.programme_link_field в {file} поле, привязанное к нему",
    "link.ok": "deal.programme_link_field {code}{label} привязывает сделки к списку {id}",
    "kept.poll_forms": "опросные формы",
    "kept.programmes": "программы",
    "lists_scope.ok": "по сопоставлению {kept} хранятся в универсальных списках (lists.*); у вебхука есть "
                      "право 'lists'",
    "lists_scope.missing": "по сопоставлению {kept} хранятся в универсальных списках, но у вебхука нет права "
                           "'lists' (есть: {have})",
}

TEXTS: dict[str, dict[str, str]] = {"en": _EN, "ru": _RU}


def normal_language(value: Any) -> str:
    """``ru`` or ``en`` from a setting's value; anything else is the default (the settings check names it)."""
    text = str(value or "").strip().lower()
    return text if text in LANGUAGES else DEFAULT_LANGUAGE


def language_from_env(environ: Mapping[str, str] | None = None, env_file: str | Path = ".env") -> str:
    """``REPORT_LANGUAGE`` without building the settings: the environment, then ``.env``, else ``ru``.

    Used when the settings cannot be loaded (and so the language of a settings error is
    still the operator's). Same precedence and case-insensitive name as ``sync.settings``.
    """
    environ = os.environ if environ is None else environ
    for key, value in environ.items():
        if key.upper() == "REPORT_LANGUAGE":
            return normal_language(value)
    try:
        from dotenv import dotenv_values
        values = dotenv_values(env_file) if Path(env_file).is_file() else {}
    except Exception:  # an unreadable .env is the settings check's business, not a reason to fail here
        values = {}
    for key, value in values.items():
        if key.upper() == "REPORT_LANGUAGE":
            return normal_language(value)
    return DEFAULT_LANGUAGE


class Texts:
    """The doctor's sentences in one language: ``t(key, **values)``, ``t.title(check id)``, ``t.type_word(TYPE)``."""

    def __init__(self, language: str = DEFAULT_LANGUAGE) -> None:
        self.language = normal_language(language)
        self._table = TEXTS[self.language]

    def __call__(self, key: str, **values: Any) -> str:
        return self._table[key].format(**values)

    def title(self, name: str) -> str:
        """The check's title for people (its id when there is no translation)."""
        return TITLES[self.language].get(name, name)

    def type_word(self, field_type: str) -> str | None:
        return TYPE_WORDS[self.language].get(field_type)

    def similar(self, close: str | None) -> str:
        return self("similar", name=close) if close else ""
