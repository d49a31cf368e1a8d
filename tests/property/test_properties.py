"""Properties of the pure parts, checked with hypothesis on hostile, generated input.

* normalisation is idempotent (a normalised value normalises to itself) and the e-mail
  the planner keys contacts by is the one the look-ups key CRM contacts by;
* the planner never plans two creates for one e-mail or one external key, never a
  create for something the CRM (or the ledger) already has, and gives every answer
  either a deal or a reason a person can read (a known problem code whose texts render);
* reading an answer is idempotent too (what the ledger stores reads back the same, and
  can always be encoded), whatever shape and characters it came in;
* batching keeps every command exactly once, and every ``$result[...]`` in a packed
  batch points backwards inside its own batch (whatever respondents typed into text
  fields); an id from another batch always comes from an earlier level.
"""
from __future__ import annotations

import json
import re
import unicodedata
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from sync.crm.batching import MAX_BATCH, UnresolvedReference, pack_batches, pack_levels, refs_in, resolve_params
from sync.mapping import load_mapping
from sync.report.messages import LANGUAGES, PROBLEMS
from sync.source.models import Answer, Poll
from sync.plan.normalize import (clean_text, match_key_email, normalize_email, normalize_phone, normalize_title,
                            phone_digits)
from sync.plan.build import AnswerInput, build_answer_plan, build_poll_plan
from sync.plan.models import (AnswerLookups, Command, CrmContact, CrmUser, PollContext, PollLookups, Programme,
                              Ref)

ROOT = Path(__file__).resolve().parents[2]
MAPPING = load_mapping(ROOT / "examples" / "field_mapping.smart-processes.json")
PORTAL = json.loads((ROOT / "sandbox" / "portal.json").read_text(encoding="utf-8"))
PROGRAMMES = [Programme(id=i["id"], title=i["title"]) for i in PORTAL["smart_processes"][1]["items"]]
POLLS = {430131691: PollContext(poll_id=430131691, poll_name="Опрос абитуриентов 2023", item_id=7, owner_id=1),
         430131702: PollContext(poll_id=430131702, poll_name="Master's open day 2025", item_id=8, owner_id=17)}

PROPS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
PLANS = settings(PROPS, max_examples=80)  # each example plans up to 25 answers
# What Bitrix24's batch substitutes (bitrix24-rest.md §4): "$" + section, then a "[...]" path
# somewhere in the rest of the word (the emulator's sandbox/bitrix/batch.py does the same).
BATCH_REF = re.compile(r"\$(result|next|total|time|error)(\S*)", re.IGNORECASE)
OUR_REF = re.compile(r"\$result\[([A-Za-z0-9_:~.-]+)\]\Z")


def batch_refs(text: str) -> list[str]:
    return [m.group(0) for m in BATCH_REF.finditer(text) if re.search(r"\[[^\]]+\]", m.group(2))]


# --- strategies ---------------------------------------------------------------------------------

# Any text (control characters, combining marks, emoji, RTL...); lone surrogates, which JSON
# decoding can also give, only where the model reads them (test_reading_an_answer_...).
any_text = st.text(st.characters(codec="utf-8"), max_size=60)
with_surrogates = st.text(st.one_of(st.characters(codec="utf-8"), st.characters(categories=["Cs"])), max_size=20)
nasty_text = st.one_of(
    any_text,
    st.sampled_from(["", " ", "\u00a0", "\t\n", "e\u0301", "e\x01\u0301", "\u202eevil", "👨‍👩‍👧", "\x7f\x85\x9f",
                     "<script>alert(1)</script>", "$result[ca_1]", "x $result[da_1_100][ID] y",
                     "$RESULT[ca_1]", "$error[ca_1][error]", "$nextweek[1]", "{programme}", "%s %(x)s", "ё" * 70,
                     "Ж" * 10_000]),
)
json_scalar = st.one_of(st.none(), st.booleans(), st.integers(-10**20, 10**20),
                        st.floats(allow_nan=False, allow_infinity=False), nasty_text)
json_value = st.one_of(json_scalar, st.lists(json_scalar, max_size=4),
                       st.dictionaries(st.text(max_size=5), json_scalar, max_size=3))

BASE_EMAILS = ["ivan.petrov@example.com", "new.applicant@mail.ru", "e.smirnova@example.org", "иван@пример.рф",
               "user+tag@example.com", "pochta@xn--e1afmkfd.xn--p1ai", "jos\u00e9@example.com", "a@b.co"]


@st.composite
def email_variant(draw):
    """An address respondents may type for one of a few people: case, padding, NFD, or junk."""
    base = draw(st.sampled_from(BASE_EMAILS))
    kind = draw(st.sampled_from(["as_is", "upper", "padded", "nfd", "junk", "none", "number", "list"]))
    if kind == "upper":
        return base.upper()
    if kind == "padded":
        return draw(st.sampled_from([" ", "\u00a0", "\t", "\n"])) + base.title() + " "
    if kind == "nfd":
        return unicodedata.normalize("NFD", base)
    if kind == "junk":
        return draw(st.sampled_from(["not an email", "a@b", "@example.com", "x@y..z", "<x@y.com>", "a@-b.com",
                                     "$result[ca_1]@x.com", "ivan@example.com\x00", "a" * 300 + "@x.com"]))
    if kind == "none":
        return None
    if kind == "number":
        return draw(st.integers(0, 10**12))
    if kind == "list":
        return [base]
    return base


programme_choice = st.one_of(
    st.sampled_from([p.title for p in PROGRAMMES] + ["Цифровой  юрист", "data science", "Цифровое право",
                                                     "Квантовая алхимия", "", "100", "Юриспруденция "]),
    st.integers(0, 200), nasty_text, st.none(), st.booleans())
programmes_value = st.one_of(st.lists(programme_choice, max_size=4), programme_choice,
                             st.dictionaries(st.text(max_size=3), programme_choice, max_size=2))

T0 = datetime(2025, 10, 20, 9, 15, 2, tzinfo=timezone(timedelta(hours=3)))


@st.composite
def raw_answer(draw, answer_ids=st.integers(1, 6)):
    answer_id = draw(answer_ids)
    items = [{"code": "email", "value": draw(email_variant())}]
    for code in ("first_name", "last_name", "middle_name", "phone", "level", "consent", "unknown_code"):
        if draw(st.booleans()):
            items.append({"code": code, "value": draw(json_value)})
    items.append({"code": "programs", "value": draw(programmes_value)})
    items = draw(st.permutations(items))
    updated = T0 + timedelta(seconds=draw(st.integers(0, 5)))
    raw = {"answer_id": answer_id, "poll_id": draw(st.sampled_from([430131691, 430131702, 999])),
           "created_at": T0.isoformat(), "updated_at": updated.isoformat(), "answers": items,
           "utm": draw(st.one_of(st.none(), st.dictionaries(st.sampled_from(["utm_source", "utm_term"]), json_value,
                                                            max_size=2))),
           "cookies": draw(st.one_of(st.none(), st.dictionaries(st.text(max_size=4), json_scalar, max_size=2))),
           "meta": draw(st.one_of(st.none(), st.fixed_dictionaries({"referer": json_value})))}
    return raw


@st.composite
def crm_state(draw):
    """What the CRM already holds: contacts for some of the e-mails (maybe several), deals by key."""
    contacts: dict[str, list[CrmContact]] = {}
    next_id = 500
    for email in draw(st.lists(st.sampled_from(BASE_EMAILS), unique=True, max_size=4)):
        key = normalize_email(email)[0]
        assume(key is not None)
        found = []
        for _ in range(draw(st.integers(1, 3))):
            next_id += 1
            found.append(CrmContact(id=next_id, name=draw(st.sampled_from(["", "Иван"])),
                                    emails=[draw(st.sampled_from([email, email.upper(), f" {email} "]))],
                                    phones=draw(st.lists(st.sampled_from(["+79161234567", "8 903 123-45-67"]),
                                                         max_size=1))))
        contacts[key] = found
    deals = draw(st.dictionaries(st.builds(lambda a, p: f"{a}:{p}", st.integers(1, 6),
                                           st.sampled_from(["0", "100", "101", "103"])),
                                 st.integers(9000, 9100), max_size=4))
    return AnswerLookups(programmes=PROGRAMMES, contacts_by_email=contacts, deals_by_origin=deals)


def inputs_of(raws, known):
    inputs = []
    for raw in raws:
        inputs.append(AnswerInput(answer=Answer.model_validate(raw), content_hash="h",
                                  known_deal_ids=known.get(raw["answer_id"], {})))
    return inputs


known_deals = st.dictionaries(st.integers(1, 6), st.dictionaries(st.sampled_from(["0", "100", "104"]),
                                                                 st.integers(8000, 8100), max_size=2), max_size=3)


# --- normalisation ------------------------------------------------------------------------------

@PROPS
@given(st.one_of(any_text, st.builds(lambda a, b: f"{a}@{b}", any_text, any_text), st.sampled_from(BASE_EMAILS),
                 email_variant()))
def test_email_normalisation_is_idempotent_and_matches_the_lookup_key(raw):
    email, reason = normalize_email(raw)
    if email is None:
        assert reason in ("missing_email", "invalid_email")
        return
    assert normalize_email(email) == (email, None)
    # the planner keys new contacts by this; look-ups key the CRM's contacts by match_key_email
    assert match_key_email(email) == email
    assert len(email) <= 250  # Bitrix24's multi-field VALUE column


@pytest.mark.parametrize("a,b", [("Ivan.Petrov@Example.com", " ivan.petrov@example.com\u00a0"),
                                 ("jos\u00e9@example.com", "jose\u0301@example.com"),
                                 ("ИВАН@ПРИМЕР.РФ", "иван@пример.рф")])
def test_one_address_typed_two_ways_gets_one_key(a, b):
    assert normalize_email(a)[0] == normalize_email(b)[0] is not None


@PROPS
@given(st.one_of(any_text, st.integers(-10**15, 10**15), st.floats(), st.booleans(), st.none(),
                 st.from_regex(r"\A[+8]?[ (\-]*7?[ ()\-0-9]{10,16}\Z")))
@example(89031234567.0)
@example("+7 (903) 123-45-67 доб. 12")
def test_phone_normalisation_is_idempotent(raw):
    phone, reason = normalize_phone(raw, "RU")
    if phone is None:
        assert reason in (None, "invalid_phone")
        return
    assert reason is None
    assert normalize_phone(phone, "RU") == (phone, None)
    assert phone.startswith("+") and phone_digits(phone) == phone[1:]


@PROPS
@given(nasty_text)
def test_title_normalisation_is_idempotent(raw):
    assert normalize_title(normalize_title(raw)) == normalize_title(raw)


@PROPS
@given(st.one_of(nasty_text, json_scalar), st.one_of(st.none(), st.integers(1, 60)), st.booleans())
@example("e\x01\u0301", None, True)
@example("a\x7fb\x85c\x9fd", None, True)
def test_clean_text_is_idempotent_and_strips_control_characters(raw, max_length, collapse):
    text, _ = clean_text(raw, max_length=max_length, collapse_spaces=collapse)
    again, truncated = clean_text(text, max_length=max_length, collapse_spaces=collapse)
    assert again == text and not truncated
    assert max_length is None or len(text) <= max_length
    assert text == text.strip()
    assert not any(unicodedata.category(c) in ("Cc", "Cs") and c not in "\t\n\r" for c in text)
    assert not set(text) & set("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")  # bidi overrides


# --- reading answers ----------------------------------------------------------------------------

@PROPS
@given(raw_answer(), with_surrogates, st.sampled_from(["utm", "cookies", "meta", "answers"]),
       st.one_of(json_value, st.lists(st.one_of(json_scalar, st.fixed_dictionaries({"code": json_scalar})),
                                      max_size=3)))
def test_reading_an_answer_is_idempotent_and_always_storable(raw, text, part, odd):
    """Whatever characters, and whatever shape one part comes in, the stored form reads back the same."""
    raw = {**raw, "meta": {text: text}, "answers": [*raw["answers"], {"code": text, "value": text}]}
    raw[part] = odd
    answer = Answer.model_validate(raw)
    stored = answer.model_dump(mode="json")
    json.dumps(stored, ensure_ascii=False).encode("utf-8")  # no lone surrogate left to fail the store
    assert Answer.model_validate(stored) == answer
    assert Answer.model_validate(stored).model_dump(mode="json") == stored


@PROPS
@given(raw_answer())
def test_an_answer_that_fits_the_contract_dumps_as_before(raw):
    """No ``ignored`` key unless something was set aside: content hashes of existing rows stay the same."""
    for key in ("utm", "cookies", "meta"):
        raw[key] = {k: str(v) for k, v in (raw[key] or {}).items()}
    raw["answers"] = [i for i in raw["answers"] if i["value"] is None or isinstance(i["value"], (str, int, float))]
    assert "ignored" not in Answer.model_validate(raw).model_dump(mode="json")


# --- the planner --------------------------------------------------------------------------------

def _assert_no_double_creates(plan, lookups, known):
    adds = Counter((c.kind, c.external_key) for c in plan.commands if c.kind.endswith("_add"))
    assert all(n == 1 for n in adds.values()), adds
    assert len({c.name for c in plan.commands}) == len(plan.commands)
    for c in plan.commands:
        if c.kind == "contact_add":
            assert c.external_key == match_key_email(c.external_key)
            assert not lookups.contacts_by_email.get(c.external_key), "a create for a contact the CRM has"
        if c.kind == "deal_add":
            answer_id, key = c.external_key.split(":")
            assert c.external_key not in lookups.deals_by_origin
            assert key not in known.get(int(answer_id), {})


@PLANS
@given(st.lists(raw_answer(), min_size=1, max_size=8), crm_state(), known_deals)
def test_planner_never_plans_two_creates_for_one_email_or_key(raws, lookups, known):
    plan = build_answer_plan(inputs_of(raws, known), polls=POLLS, lookups=lookups, mapping=MAPPING)
    _assert_no_double_creates(plan, lookups, known)
    # and one contact per e-mail across the plan, whether created or reused
    emails = [c.email for c in plan.contacts if c.action == "create"]
    assert len(emails) == len(set(emails))


@PLANS
@given(st.lists(raw_answer(), min_size=1, max_size=8), crm_state(), known_deals)
def test_every_answer_gets_a_deal_or_a_readable_reason(raws, lookups, known):
    plan = build_answer_plan(inputs_of(raws, known), polls=POLLS, lookups=lookups, mapping=MAPPING)
    assert sorted(a.answer_id for a in plan.answers) == sorted({r["answer_id"] for r in raws})
    for answer in plan.answers:
        assert answer.deals or answer.needs_attention, answer
        for problem in answer.problems:
            for language in LANGUAGES:
                message = PROBLEMS[language].get(problem.code)
                assert message is not None, f"no {language} text for problem {problem.code!r}"
                message.text.format(**problem.params)  # every placeholder is filled
            assert len(json.dumps(problem.params, ensure_ascii=False)) < 2000  # readable, not a data dump


def test_problems_quote_a_10000_character_value_briefly():
    raw = {"answer_id": 1, "poll_id": 430131691, "created_at": T0.isoformat(), "updated_at": T0.isoformat(),
           "answers": [{"code": "email", "value": "a@example.com"}, {"code": "programs", "value": ["Ж" * 10_000, "Экономика"]},
                       {"code": "level", "value": "Ё" * 10_000}, {"code": "phone", "value": "7" * 10_000}]}
    (answer,) = build_answer_plan(inputs_of([raw], {}), polls=POLLS, lookups=AnswerLookups(programmes=PROGRAMMES),
                                  mapping=MAPPING).answers
    assert {"unknown_programme", "unknown_enum_value", "invalid_phone"} <= {
        p.code for p in answer.problems}
    assert all(len(json.dumps(p.params, ensure_ascii=False)) < 500 for p in answer.problems), answer.problems


@PLANS
@given(st.lists(raw_answer(), min_size=1, max_size=8), crm_state(), known_deals)
def test_refs_point_at_planned_contact_creates_that_come_first(raws, lookups, known):
    plan = build_answer_plan(inputs_of(raws, known), polls=POLLS, lookups=lookups, mapping=MAPPING)
    position = {c.name: i for i, c in enumerate(plan.commands)}
    for i, command in enumerate(plan.commands):
        for ref in refs_in(command.params):
            assert ref in position and position[ref] < i
            assert plan.commands[position[ref]].kind == "contact_add"
            assert ref in command.depends_on


@PLANS
@given(st.lists(raw_answer(answer_ids=st.just(7)), min_size=2, max_size=5))
def test_duplicate_answer_ids_plan_once_with_the_newest_content(raws):
    plan = build_answer_plan(inputs_of(raws, {}), polls=POLLS, lookups=AnswerLookups(programmes=PROGRAMMES),
                             mapping=MAPPING)
    assert [a.answer_id for a in plan.answers] == [7]
    newest = max(datetime.fromisoformat(r["updated_at"]) for r in raws)
    winner = [r for r in raws if datetime.fromisoformat(r["updated_at"]) == newest][-1]
    alone = build_answer_plan(inputs_of([winner], {}), polls=POLLS, lookups=AnswerLookups(programmes=PROGRAMMES),
                              mapping=MAPPING)
    assert plan.model_dump() == alone.model_dump()


@PLANS
@given(st.lists(raw_answer(), min_size=1, max_size=6))
@example([{"answer_id": 1, "poll_id": 430131691, "created_at": T0.isoformat(), "updated_at": T0.isoformat(),
           "answers": [{"code": "email", "value": "a@example.com"}, {"code": "programs", "value": ["Экономика\x00"]}]}])
def test_reconciliation_looks_up_every_deal_key_the_planner_may_create(raws):
    from sync.plan.build import ProgrammeResolver
    from sync.answers_stage import candidate_origin_ids

    resolver = ProgrammeResolver(PROGRAMMES, MAPPING.programmes.aliases)
    plan = build_answer_plan(inputs_of(raws, {}), polls=POLLS, lookups=AnswerLookups(programmes=PROGRAMMES),
                             mapping=MAPPING)
    answers = {}
    for item in inputs_of(raws, {}):  # the planner's rule: the newest copy of an id wins (the later on a tie)
        seen = answers.get(item.answer.answer_id)
        if seen is None or item.answer.updated_at >= seen.updated_at:
            answers[item.answer.answer_id] = item.answer
    for planned in plan.answers:
        looked_up = set(candidate_origin_ids(answers[planned.answer_id], resolver, MAPPING))
        assert {d.origin_id for d in planned.deals} <= looked_up


@st.composite
def raw_poll(draw):
    poll_id = draw(st.sampled_from([430131691, 430131702, 430131703]))
    updated = T0 + timedelta(seconds=draw(st.integers(0, 5)))
    return {"poll_id": poll_id, "poll_name": draw(nasty_text), "poll_language": draw(st.sampled_from(["ru", "", "en"])),
            "employee_email": draw(st.sampled_from(["admin@hse.ru", "left.company@hse.ru", "", "ADMIN@hse.ru "])),
            "status": "active", "created_at": T0.isoformat(), "updated_at": updated.isoformat()}


@PROPS
@given(st.lists(st.tuples(raw_poll(), st.one_of(st.none(), st.integers(1, 50))), min_size=1, max_size=6),
       st.dictionaries(st.sampled_from([430131691, 430131702, 430131703]), st.integers(60, 70), max_size=2))
def test_poll_planner_never_plans_two_forms_for_one_poll(polls, existing):
    users = PollLookups(users_by_email={"admin@hse.ru": CrmUser(id=1, email="admin@hse.ru", active=True),
                                        "left.company@hse.ru": CrmUser(id=31, email="left.company@hse.ru",
                                                                       active=False)},
                        items_by_poll=existing)
    todo = [(Poll.model_validate(raw), "h", item) for raw, item in polls]
    plan = build_poll_plan(todo, users, MAPPING)
    per_poll = Counter(c.poll_id for c in plan.commands)
    assert all(n == 1 for n in per_poll.values()), per_poll
    assert len({c.name for c in plan.commands}) == len(plan.commands)
    assert sorted(p.poll_id for p in plan.polls) == sorted({raw["poll_id"] for raw, _ in polls})
    for c in plan.commands:
        if c.kind == "poll_form_add":
            assert c.poll_id not in existing and all(item is None for raw, item in polls
                                                     if raw["poll_id"] == c.poll_id)
        assert c.params["fields"][MAPPING.poll_form.title_field]  # never an empty title


# --- batching -----------------------------------------------------------------------------------

def _simulate(commands, size):
    """Pack and resolve as ``push_commands`` does, every command succeeding.

    The batches of one level may be in flight together, so a command may only use ids
    created in earlier levels, or ``$result`` of an earlier command of its own batch.
    """
    created: dict[str, int] = {}
    sent_batches = []
    for level in pack_levels(commands, size):
        made = {}
        for batch in level:
            sent = []
            for command in batch:
                params = resolve_params(command.params, same_batch={c.name for c, _ in sent}, created=created)
                sent.append((command, params))
                made[command.name] = 1000 + len(created) + len(made)
            sent_batches.append(sent)
        created.update(made)
    return sent_batches


def _strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


def _check_batches(commands, size):
    batches = pack_batches(commands, size)
    assert sorted(c.name for b in batches for c in b) == sorted(c.name for c in commands)  # each exactly once
    assert all(1 <= len(b) <= size for b in batches)
    for sent in _simulate(commands, size):  # raises UnresolvedReference if a prerequisite came too late
        earlier: set[str] = set()
        for command, params in sent:
            for text in _strings(params):
                for ref in batch_refs(text):
                    ours = OUR_REF.match(text)
                    assert ours and ref == text, f"{command.name}: a stray batch reference in {text!r}"
                    assert ours.group(1) in earlier, f"{command.name} refers forwards to {ours.group(1)}"
            earlier.add(command.name)


@PLANS
@given(st.lists(raw_answer(answer_ids=st.integers(1, 40)), min_size=1, max_size=25), crm_state(), known_deals,
       st.integers(1, MAX_BATCH))
def test_batches_of_a_real_plan_keep_every_command_once_and_refs_backwards(raws, lookups, known, size):
    plan = build_answer_plan(inputs_of(raws, known), polls=POLLS, lookups=lookups, mapping=MAPPING)
    _check_batches(plan.commands, size)


@st.composite
def chained_commands(draw):
    """Commands in planner order: each new contact followed by deals chained to it, free deals after."""
    commands: list[Command] = []
    n_contacts = draw(st.integers(0, 30))
    for i in range(n_contacts):
        name = f"ca_{i}"
        commands.append(Command(name=name, method="crm.contact.add", kind="contact_add", external_key=f"{i}@x.ru",
                                params={"fields": {"NAME": draw(nasty_text)}}))
        for j in range(draw(st.integers(0, 3))):
            commands.append(Command(name=f"da_{i}_{j}", method="crm.deal.add", kind="deal_add", depends_on=[name],
                                    external_key=f"{i}:{j}",
                                    params={"fields": {"CONTACT_ID": Ref(command=name), "TITLE": draw(nasty_text),
                                                       "LIST": [Ref(command=name)]}}))
    for k in range(draw(st.integers(0, 10))):
        commands.append(Command(name=f"du_{k}", method="crm.deal.update", kind="deal_update", external_key=f"u{k}",
                                params={"id": k + 1, "fields": {"TITLE": draw(nasty_text)}}))
    return commands


@PROPS
@given(chained_commands(), st.integers(1, MAX_BATCH))
def test_batches_keep_every_command_once_and_refs_backwards(commands, size):
    _check_batches(commands, size)


@given(st.integers(-5, 120))
@settings(max_examples=30, deadline=None)
def test_batch_size_outside_1_to_50_is_refused(size):
    commands = [Command(name="c", method="crm.deal.update", kind="deal_update", params={})]
    if 1 <= size <= MAX_BATCH:
        assert pack_batches(commands, size) == [commands]
    else:
        with pytest.raises(ValueError):
            pack_batches(commands, size)


def test_a_ref_to_a_command_not_yet_run_is_refused_not_guessed():
    with pytest.raises(UnresolvedReference):
        resolve_params({"CONTACT_ID": Ref(command="ca_9")}, same_batch=set(), created={})
