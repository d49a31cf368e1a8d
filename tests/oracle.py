"""A field-level oracle: what every CRM field the job owns must hold, compared with what it holds.

The chaos and crash tests count records (lost, duplicated); this module checks content.
Given the CRM after the sync, the CRM before it (the seeded records a manager made), the
answers' latest versions and the mapping, ``check_crm`` computes the expected value of
each field the job owns and returns one ``Mismatch`` per field that differs:

* contacts — the lowest-id contact of each e-mail carries the e-mail; names are filled
  only where empty (a pre-existing value is never replaced); every phone an answer gave
  is present, and phones and e-mails the contact had are kept;
* deals — the deal of each (answer, programme): on ``never`` the one keyed by
  ``ORIGINATOR_ID``/``ORIGIN_ID``; on ``open``/``any`` the answer's own one or the deal of
  that contact and programme that carries the answer's summary. A deal the answer created
  has its title, mapped fields, enumerations, programme and poll-form links and contact
  exactly as the latest version says (a value it no longer has is cleared). A reused deal
  keeps every value it had before the sync; its empty fields hold a value one of the
  answers landing on it gave; its UTM group is one attribution, never a mix;
* summaries — each deal an answer lands on carries the latest version's tag exactly
  once, no deal carries any tag twice;
* poll forms — one per poll, title, poll id, owner and the mapped poll fields.

The expected values are computed here from the mapping's value sources, not by calling the
planner, so a planner bug shows as a mismatch instead of agreeing with itself. Shared with
the job only: what "resolving a programme" and "a valid e-mail/phone" mean (tested on their
own) and the summary version hash (the tag is its contract).
"""
from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Iterable

from pydantic import ValidationError

from sync.mapping import FieldMapping
from sync.plan.models import Programme
from sync.plan.normalize import clean_text, normalize_email, normalize_phone, phone_digits
from sync.plan.programmes import ProgrammeResolver, chosen_programmes
from sync.plan.summary import answer_version
from sync.source.models import Answer

NAME_MAX = 50      # the portal's NAME / LAST_NAME / SECOND_NAME columns
TITLE_MAX = 255    # the deal's TITLE column
_TAG = re.compile(r"\[#(\d+):([0-9a-f]{8})\]")


@dataclass(frozen=True)
class Mismatch:
    """One field that does not hold what the answers say it must."""

    record: str        # "contact 501", "deal 12", "poll form 430131691", "answer 814573981"
    field: str
    expected: Any
    actual: Any
    why: str = ""

    def __str__(self) -> str:
        return f"{self.record}.{self.field}: expected {self.expected!r}, found {self.actual!r} ({self.why})"


@dataclass
class Crm:
    """A snapshot of the CRM records the job writes, read through the emulator's admin handle."""

    contacts: dict[int, dict] = field(default_factory=dict)
    deals: dict[int, dict] = field(default_factory=dict)
    forms: list[dict] = field(default_factory=list)           # poll-form records (items or list elements)
    comments: dict[int, list[str]] = field(default_factory=dict)  # deal id → its timeline comments
    programmes: list[Programme] = field(default_factory=list)
    users: list[dict] = field(default_factory=list)
    deal_booleans: set[str] = field(default_factory=set)   # boolean deal fields: "cleared" reads back as 0

    @classmethod
    def of(cls, emulator, mapping: FieldMapping) -> "Crm":
        admin = emulator.admin
        pf, pm = mapping.poll_form, mapping.programmes
        snap = cls(contacts={int(c["ID"]): c for c in admin.contacts()},
                   deals={int(d["ID"]): d for d in admin.deals()},
                   forms=admin.list_elements(pf.iblock_id) if pf.is_list else admin.items(pf.entity_type_id),
                   users=[dict(u) for u in emulator.crm.users],
                   deal_booleans={f.name for f in emulator.crm.deal_schema.fields if f.type == "boolean"})
        for comment in admin.timeline_comments("deal"):
            snap.comments.setdefault(int(comment["ENTITY_ID"]), []).append(str(comment.get("COMMENT") or ""))
        if pm.is_list:
            for element in admin.list_elements(pm.iblock_id):
                status = {str(v) for v in _values(element.get(pm.status_field))} if pm.status_field else set()
                active = not pm.active_values or bool(status & set(pm.active_values))
                snap.programmes.append(Programme(id=int(element["ID"]), title=str(element.get(pm.title_field) or ""),
                                                 active=active))
        else:
            for item in admin.items(pm.entity_type_id):
                snap.programmes.append(Programme(id=int(item["id"]), title=str(item.get(pm.title_field) or "")))
        return snap


def _values(value: Any) -> list:
    if isinstance(value, dict):
        return [v for v in value.values() if v not in (None, "")]
    if isinstance(value, list):
        return [v for v in value if v not in (None, "")]
    return [] if value in (None, "") else [value]


def norm(value: Any) -> str | None:
    """A field value as comparable text: empty → None, booleans → "1"/"0", whole numbers without ".0"."""
    values = _values(value)
    if not values:
        return None
    if len(values) > 1:
        return ", ".join(str(norm(v)) for v in values)
    value = values[0]
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)


# --- the expected value of a mapping source, computed independently of sync.plan.values ------------

def _crm_value(value: Any) -> Any:
    """What a field must hold for a respondent's value: booleans 1/0, lists joined, text cleaned."""
    if value is None or isinstance(value, dict):
        return None
    if isinstance(value, bool):
        return 1 if value else 0
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, list):
        value = ", ".join(str(v) for v in value if v is not None)
    return clean_text(value)[0] or None


def expected_source(source: str, answer: Answer, poll: dict, owner: int) -> Any:
    kind, _, arg = source.partition(":")
    if source == "owner":
        return owner
    if source == "cookies":
        text = "; ".join(f"{k}={v}" for k, v in (answer.cookies or {}).items() if v is not None)
        return clean_text(text)[0] or None
    if kind == "const":
        return arg
    if kind == "poll":
        return poll.get(arg) or None
    if kind == "answer":
        value = getattr(answer, arg)
        return value.isoformat() if hasattr(value, "isoformat") else value
    if kind == "question":
        return _crm_value(answer.value_of(arg))
    if kind == "utm":
        return _crm_value(answer.utm.get(arg))
    if kind == "meta":
        return _crm_value(answer.meta.get(arg))
    if kind == "cookie":
        return _crm_value(answer.cookies.get(arg))
    raise AssertionError(f"the oracle does not know source {source!r}")


def _cut(text: str, limit: int) -> str:
    return text[:limit].rstrip() if len(text) > limit else text


def _name(answer: Answer, code: str | None) -> str:
    raw = answer.value_of(code) if code else None
    if raw is None or isinstance(raw, bool) or not isinstance(raw, (str, int, float)):
        return ""
    return _cut(clean_text(raw)[0], NAME_MAX)


def _names(answer: Answer, mapping: FieldMapping) -> dict[str, str]:
    q = mapping.questions
    return {"first_name": _name(answer, q.first_name), "last_name": _name(answer, q.last_name),
            "middle_name": _name(answer, q.middle_name)}


def expected_title(answer: Answer, mapping: FieldMapping, poll: dict, programme: Programme | None) -> str:
    dm = mapping.deal
    values = defaultdict(str, {"programme": programme.title if programme else "", "poll_name": poll.get("poll_name") or "",
                               "answer_id": str(answer.answer_id), **_names(answer, mapping)})
    template = dm.title_template if programme else dm.title_without_programme
    text = re.sub(r"[\s—–:-]+$", "", " ".join(template.format_map(values).split()))
    return _cut(clean_text(text)[0], TITLE_MAX) or f"Answer {answer.answer_id}"


def _enumeration(answer: Answer, enum) -> str | None:
    raw = answer.value_of(enum.question)
    if raw is None or raw == "" or not isinstance(raw, (str, int, float)):
        return None
    text = clean_text(raw)[0]
    if text in enum.values:
        return enum.values[text]
    folded = {" ".join(k.split()).casefold().replace("ё", "е"): v for k, v in enum.values.items()}
    return folded.get(" ".join(text.split()).casefold().replace("ё", "е"))


def owned_fields(answer: Answer, mapping: FieldMapping, poll: dict, owner: int) -> dict[str, str | None]:
    """Every deal field the answer owns, as comparable text (None: the version has no value)."""
    dm = mapping.deal
    out = {code: norm(expected_source(source, answer, poll, owner)) for code, source in dm.fields.items()}
    out.update({code: _enumeration(answer, enum) for code, enum in dm.enumerations.items()})
    return out


# --- the oracle ------------------------------------------------------------------------------------

@dataclass
class _Landing:
    answer: Answer
    key: str
    programme: Programme | None
    poll: dict
    owner: int
    versions: list[Answer]


def _owner(poll: dict | None, crm: Crm, mapping: FieldMapping) -> int:
    email = ((poll or {}).get("employee_email") or "").strip().lower()
    for user in crm.users:
        if email and str(user.get("EMAIL", "")).strip().lower() == email:
            return int(user["ID"]) if user.get("ACTIVE", True) in (True, "Y", 1, "1") else \
                mapping.default_responsible_user_id
    return mapping.default_responsible_user_id


def _emails(contact: dict) -> list[str]:
    return [str(e.get("VALUE", "")) for e in contact.get("EMAIL") or []]


def _phones(contact: dict) -> set[str]:
    return {phone_digits(str(p.get("VALUE", ""))) for p in contact.get("PHONE") or []}


def _form_poll_id(form: dict, mapping: FieldMapping) -> int | None:
    pf = mapping.poll_form
    if pf.is_list:
        raw = form.get("CODE") or next(iter(_values(form.get(pf.poll_id_field))), None)
    else:
        raw = form.get(pf.poll_id_field)
    try:
        return int(raw)
    except (TypeError, ValueError):
        return None


def check_crm(*, after: Crm, before: Crm, answers: Iterable[dict], mapping: FieldMapping,
              polls: Iterable[dict] = (), earlier: dict[int, list[dict]] | None = None,
              skip: Iterable[int] = (), source_name: str | None = None) -> list[Mismatch]:
    """Every field the job owns that does not hold what the answers' latest versions say.

    ``answers``: each answer's latest version as the source serves it. ``polls``: the polls
    known to the source (their forms' titles and owners are checked; a poll only answers
    name is checked for existence and owner). ``earlier``: older versions of the answers
    (an edit between runs), whose values a fill-only field may legitimately hold.
    ``skip``: answers the scenario expects not to be written (e.g. their deal was deleted).
    """
    source_name = source_name or mapping.source_name
    dm, cm, q = mapping.deal, mapping.contact, mapping.questions
    out: list[Mismatch] = []
    polls_by_id = {int(p["poll_id"]): p for p in polls}
    resolver = ProgrammeResolver(after.programmes, mapping.programmes.aliases)
    skip = set(skip)
    older: dict[int, list[Answer]] = defaultdict(list)
    for answer_id, docs in (earlier or {}).items():
        for doc in docs:
            try:
                older[int(answer_id)].append(Answer.model_validate(doc))
            except ValidationError:
                pass

    # Which answers must be in the CRM, on which programmes.
    by_email: dict[str, list[Answer]] = defaultdict(list)
    landings: list[_Landing] = []
    forms_needed: set[int] = set()
    for doc in answers:
        try:
            answer = Answer.model_validate(doc)
        except ValidationError:
            continue
        email, _ = normalize_email(answer.value_of(q.email))
        if email is None or answer.answer_id in skip:
            continue
        programmes: list[Programme] = []
        names = chosen_programmes(answer, q.programmes, [])
        for name in names:
            programme, _ = resolver.resolve_all(name)
            if programme is not None and programme.id not in {p.id for p in programmes}:
                programmes.append(programme)
        if names and not programmes:
            continue
        poll = polls_by_id.get(answer.poll_id, {"poll_id": answer.poll_id})
        forms_needed.add(answer.poll_id)
        owner = _owner(polls_by_id.get(answer.poll_id), after, mapping)
        by_email[email].append(answer)
        for programme in programmes or [None]:
            landings.append(_Landing(answer, str(programme.id) if programme else "0", programme, poll, owner,
                                     [answer, *older.get(answer.answer_id, [])]))

    # Poll forms.
    forms: dict[int, list[dict]] = defaultdict(list)
    for form in after.forms:
        poll_id = _form_poll_id(form, mapping)
        if poll_id is not None:
            forms[poll_id].append(form)
    pf = mapping.poll_form
    for poll_id in sorted(forms_needed | set(polls_by_id)):
        found = forms.get(poll_id, [])
        if len(found) != 1:
            out.append(Mismatch(f"poll form {poll_id}", "count", 1, len(found), "one poll form per poll"))
            continue
        form, poll = found[0], polls_by_id.get(poll_id)
        owner = _owner(poll, after, mapping)
        if norm(form.get(pf.owner_field)) != str(owner):
            out.append(Mismatch(f"poll form {poll_id}", pf.owner_field, str(owner), norm(form.get(pf.owner_field)),
                                "the poll owner's user, or the default user"))
        if poll is None:
            continue
        title = _cut(clean_text(poll.get("poll_name"))[0], TITLE_MAX) or f"Poll {poll_id}"
        if norm(form.get(pf.title_field)) != title:
            out.append(Mismatch(f"poll form {poll_id}", pf.title_field, title, norm(form.get(pf.title_field))))
        if pf.url_field and pf.url_template:
            url = pf.url_template.format(poll_id=poll_id)
            if norm(form.get(pf.url_field)) != url:
                out.append(Mismatch(f"poll form {poll_id}", pf.url_field, url, norm(form.get(pf.url_field))))
        for code, source in pf.fields.items():
            want = norm(poll.get(source.partition(":")[2])) if source.startswith("poll:") else None
            if want is not None and norm(form.get(code)) != want:
                out.append(Mismatch(f"poll form {poll_id}", code, want, norm(form.get(code))))
    form_ids = {poll_id: int(found[0].get("ID", found[0].get("id"))) for poll_id, found in forms.items()
                if len(found) == 1}

    # Contacts.
    contact_of: dict[str, int] = {}
    ids_by_email: dict[str, list[int]] = defaultdict(list)
    for contact_id, contact in after.contacts.items():
        for value in {e.strip().lower() for e in _emails(contact)}:
            ids_by_email[value].append(contact_id)
    for email, group in sorted(by_email.items()):
        ids = sorted(ids_by_email.get(email, []))
        if not ids:
            out.append(Mismatch(f"contact <{email}>", "EMAIL", email, None, "no contact carries the e-mail"))
            continue
        contact_id = contact_of[email] = ids[0]
        contact, seeded = after.contacts[contact_id], before.contacts.get(contact_id)
        record = f"contact {contact_id}"
        versions = [v for a in group for v in [a, *older.get(a.answer_id, [])]]
        for code, key in ((cm.name_field, "first_name"), (cm.last_name_field, "last_name"),
                          (cm.middle_name_field, "middle_name")):
            had = norm(seeded.get(code)) if seeded else None
            now = norm(contact.get(code))
            given = [n for n in (_names(v, mapping)[key] for v in versions) if n]
            if had is not None:
                if now != had:
                    out.append(Mismatch(record, code, had, now, "a pre-existing value is never replaced"))
            elif given and now not in given:
                out.append(Mismatch(record, code, given[0], now, "an empty name is filled from an answer"))
            elif not given and now not in (None, cm.placeholders.get(code)):
                out.append(Mismatch(record, code, None, now, "no answer gave this name"))
        phones = _phones(contact)
        for answer in group:
            phone, _ = normalize_phone(answer.value_of(q.phone), mapping.phone_region)
            if phone and phone_digits(phone) not in phones:
                out.append(Mismatch(record, "PHONE", phone, sorted(phones),
                                    f"answer {answer.answer_id}'s phone is added, never dropped"))
        if seeded:
            for digits in _phones(seeded) - phones:
                out.append(Mismatch(record, "PHONE", digits, sorted(phones), "a phone the contact had was removed"))
            for value in set(_emails(seeded)) - set(_emails(contact)):
                out.append(Mismatch(record, "EMAIL", value, _emails(contact), "an e-mail the contact had was removed"))
        else:
            for code, source in cm.on_create.items():
                allowed = {norm(expected_source(source, a, polls_by_id.get(a.poll_id, {}),
                                                _owner(polls_by_id.get(a.poll_id), after, mapping))) for a in versions}
                if norm(contact.get(code)) not in allowed:
                    out.append(Mismatch(record, code, sorted(map(str, allowed)), norm(contact.get(code)),
                                        "set when the contact was created"))

    # Deals: find the deal each landing is on.
    by_origin: dict[str, list[int]] = defaultdict(list)
    for deal_id, deal in after.deals.items():
        if deal.get("ORIGINATOR_ID") == source_name and deal.get("ORIGIN_ID"):
            by_origin[str(deal["ORIGIN_ID"])].append(deal_id)
    target: dict[tuple[int, str], int] = {}
    landers: dict[int, list[_Landing]] = defaultdict(list)
    for landing in landings:
        answer = landing.answer
        oid = f"{answer.answer_id}:{landing.key}"
        record = f"answer {answer.answer_id}"
        email, _ = normalize_email(answer.value_of(q.email))
        contact_id = contact_of.get(email)
        own = sorted(by_origin.get(oid, []))
        if own:
            deal_id = own[0]
        elif dm.reuse == "never":
            out.append(Mismatch(record, f"deal {oid}", "a deal", None, "one deal per answer and programme"))
            continue
        else:
            tag = f"[#{answer.answer_id}:{answer_version(answer)[:8]}]"
            link = dm.programme_link_field
            mine = [d for d, deal in after.deals.items()
                    if contact_id is not None and norm(deal.get(dm.contact_field)) == str(contact_id)
                    and (not link or norm(deal.get(link)) == (str(landing.programme.id) if landing.programme else None))]
            tagged = [d for d in mine if any(tag in c for c in _summaries(after, d, mapping))]
            if dm.summary.to != "off":
                mine = tagged
            if not mine:
                out.append(Mismatch(record, f"deal for programme {landing.key}", "a deal of the contact", None,
                                    "the answer's programme has no deal carrying its summary"))
                continue
            deal_id = sorted(mine)[0]
        target[(answer.answer_id, landing.key)] = deal_id
        landers[deal_id].append(landing)

    # Summaries: the latest version's tag once on each deal it lands on, never twice anywhere.
    if dm.summary.to != "off":
        for deal_id in sorted(after.deals):
            counts: dict[str, int] = defaultdict(int)
            for text in _summaries(after, deal_id, mapping):
                for answer_id, version in _TAG.findall(text):
                    counts[f"{answer_id}:{version}"] += 1
            for tag, n in counts.items():
                if n > 1:
                    out.append(Mismatch(f"deal {deal_id}", "summary", f"[#{tag}] once", f"{n} times"))
        for (answer_id, key), deal_id in target.items():
            landing = next(l for l in landers[deal_id] if l.answer.answer_id == answer_id and l.key == key)
            tag = f"[#{answer_id}:{answer_version(landing.answer)[:8]}]"
            n = sum(text.count(tag) for text in _summaries(after, deal_id, mapping))
            if n != 1:
                out.append(Mismatch(f"deal {deal_id}", "summary", f"{tag} once", f"{n} times",
                                    f"answer {answer_id}'s latest version"))

    # Deals: their fields.
    for deal_id, group in sorted(landers.items()):
        deal, seeded = after.deals[deal_id], before.deals.get(deal_id)
        record = f"deal {deal_id}"
        owner = next((l for l in group if deal.get("ORIGINATOR_ID") == source_name
                      and deal.get("ORIGIN_ID") == f"{l.answer.answer_id}:{l.key}"), None)
        email, _ = normalize_email(group[0].answer.value_of(q.email))
        if contact_of.get(email) is not None and norm(deal.get(dm.contact_field)) != str(contact_of[email]):
            out.append(Mismatch(record, dm.contact_field, str(contact_of[email]), norm(deal.get(dm.contact_field)),
                                "the contact of the answer's e-mail"))
        if dm.programme_link_field:
            want = str(group[0].programme.id) if group[0].programme else None
            have = norm(deal.get(dm.programme_link_field))
            if have != want and not (seeded is None and owner is None and want is None):
                out.append(Mismatch(record, dm.programme_link_field, want, have, "the chosen programme"))
        allowed: dict[str, list[str | None]] = defaultdict(list)   # what fill-ins may have written
        groups: list[tuple] = []
        for landing in group:
            for version in landing.versions:
                fields = owned_fields(version, mapping, landing.poll, landing.owner)
                for code, value in fields.items():
                    allowed[code].append(value)
                groups.append(tuple(fields.get(c) for c in dm.attribution_fields))
        if owner is not None and seeded is None:
            # Created by this answer: every owned field follows its latest version.
            title = expected_title(owner.answer, mapping, owner.poll, owner.programme)
            if norm(deal.get("TITLE")) != title:
                out.append(Mismatch(record, "TITLE", title, norm(deal.get("TITLE")),
                                    f"answer {owner.answer.answer_id}'s latest version"))
            if dm.poll_form_link_field and owner.answer.poll_id in form_ids:
                want = str(form_ids[owner.answer.poll_id])
                if norm(deal.get(dm.poll_form_link_field)) != want:
                    out.append(Mismatch(record, dm.poll_form_link_field, want, norm(deal.get(dm.poll_form_link_field))))
            fields = owned_fields(owner.answer, mapping, owner.poll, owner.owner)
            others = [l for l in group if l is not owner]
            for code, want in fields.items():
                have = norm(deal.get(code))
                if want is not None and have != want:
                    out.append(Mismatch(record, code, want, have, f"answer {owner.answer.answer_id}'s latest version"))
                # A boolean user field has no "empty" once written: cleared, it stores 0 (main module).
                elif want is None and have is not None and not (others and have in allowed[code]) \
                        and not (code in after.deal_booleans and have == "0"):
                    out.append(Mismatch(record, code, None, have,
                                        f"answer {owner.answer.answer_id}'s latest version has no value: cleared"))
            continue
        # Reused: what it had stays; what was empty holds what one of its answers gave.
        for code in list(dm.fields) + list(dm.enumerations) + ["TITLE", "STAGE_ID", dm.owner_field]:
            had = norm(seeded.get(code)) if seeded else None
            have = norm(deal.get(code))
            if seeded is not None and had is not None and have != had:
                out.append(Mismatch(record, code, had, have, "a reused deal keeps the values it had"))
            elif code in allowed and code not in dm.attribution_fields and (had is None) and \
                    have not in allowed[code] and not (have is None and owner is None and seeded is None):
                out.append(Mismatch(record, code, sorted(map(str, filter(None, allowed[code]))), have,
                                    "an empty field of a reused deal is filled from an answer on it"))
        if dm.attribution_fields:
            have_group = tuple(norm(deal.get(c)) for c in dm.attribution_fields)
            had_group = tuple(norm(seeded.get(c)) for c in dm.attribution_fields) if seeded else None
            if had_group is not None and any(had_group):
                ok = have_group == had_group
            else:
                ok = have_group in groups or (not any(have_group) and not any(any(g) for g in groups))
            if not ok:
                out.append(Mismatch(record, "UTM", had_group if had_group and any(had_group) else groups, have_group,
                                    "one attribution: the deal's own, else one answer's whole UTM group"))
        if seeded is not None and dm.summary.to == "comments":
            if not str(deal.get("COMMENTS") or "").startswith(str(seeded.get("COMMENTS") or "")):
                out.append(Mismatch(record, "COMMENTS", seeded.get("COMMENTS"), deal.get("COMMENTS"),
                                    "a manager's text stays"))
    return out


def _summaries(crm: Crm, deal_id: int, mapping: FieldMapping) -> list[str]:
    if mapping.deal.summary.to == "comments":
        return [str(crm.deals[deal_id].get("COMMENTS") or "")]
    return crm.comments.get(deal_id, [])
