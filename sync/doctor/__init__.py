"""``cli.py doctor``: everything a run needs, checked one line at a time, each failure with its fix.

``run_checks(settings)`` returns a ``Check`` per line, in this order; a check whose
prerequisite failed is *skipped* (``ok=False, skipped=True``) naming that reason, so an
unreachable portal gives one failure, not a crash or a dozen::

    configuration              every setting present and well-formed (load_settings)
    mapping file               FIELD_MAPPING exists and validates
    survey API                 one GET /polls?limit=1: the API answers and takes the token
    Bitrix24 webhook           server.time answers, the webhook is accepted, its user is active (profile)
    Bitrix24 scopes            the webhook has the crm and user scopes (scope)
    deal fields                crm.deal.fields has every field the mapping names, of a compatible type;
                               enumerations are enumerations holding every item ID the mapping uses
    deal pipeline              deal.category_id is in crm.category.list (entityTypeId 2)
    deal stage                 deal.stage_id is in crm.status.list DEAL_STAGE_<category> (DEAL_STAGE for 0)
    deal source                deal.source_id is in crm.status.list SOURCE
    contact fields             crm.contact.fields has the name fields and every on_create field
    poll forms                 crm.item.fields of poll_form.entity_type_id has the poll id, title, owner
                               and extra fields (a missing smart process is NOT_FOUND)
    programmes                 crm.item.fields of programmes.entity_type_id has the title field
    default responsible user   default_responsible_user_id exists and is active (user.get)
    store                      DATABASE_URL answers and is migrated to the code's revision

Nothing is written anywhere (a SQLite store that does not exist yet is not created).

Exit code of ``cli.py doctor`` (``exit_code_for``): 0 when every check passes; else
``USAGE_ERROR`` (2) if a *config* check failed — a setting, the mapping file, or the
mapping against the portal: the operator must change something; else ``ABORTED`` (3)
— only *system* checks failed: a system is unreachable, refused the credentials, lacks
a scope, or the store is unreachable or not migrated (the same code a run exits with).

The package is split by job: ``checklist`` (``Check``, the exit code, printing),
``checks_settings``, ``checks_survey``, ``checks_bitrix``, ``checks_mapping`` (the
mapping against the portal, over the cached calls in ``portal``), ``checks_store``
and ``runner``. Every sentence is in ``texts`` (Russian and English, by ``REPORT_LANGUAGE``);
the names above are the checks' ids, English in both languages and in ``--json``.
"""
from sync.doctor.checklist import CONFIG, SYSTEM, Check, as_json, exit_code_for, format_check
from sync.doctor.runner import run_checks

__all__ = ["CONFIG", "SYSTEM", "Check", "as_json", "exit_code_for", "format_check", "run_checks"]
