"""Outreach messages: each step of a plan rendered from a template, stating verified claims only.

Templates are data (``outreach_templates/``): one per channel and language
(``email.<lang>.subject.j2``, ``email.<lang>.txt.j2``, ``email.<lang>.html.j2``,
``phone.<lang>.txt.j2`` — a call script —, ``meeting_invite.<lang>.txt.j2``,
``sms.<lang>.txt.j2``), with the language chosen by the investor's jurisdiction
(``languages.toml``). A template never sees a claim the anti-greenwashing check
(:mod:`operators.claims`) did not keep: it gets ``claims``, the kept ones, each with
its one sentence from the language's phrasebook (``claims.<lang>.toml``), and
``claim(property_id, kind)``, which gives a kept claim's sentence and fails for any
other. It gets no personal data at all: no name, no contact, only the tenant, the
lead properties' ids and the step.

A step whose message cannot be rendered lawfully is dropped with a reason, never
sent: a template that asks for an unverified claim or for a variable it was not
given (``StrictUndefined``), a rendered text that states a claim the check removed
(a template that wrote one out by hand), a channel without a template, a text over
the channel's length. Templates run sandboxed, and HTML e-mail is autoescaped.

Rendered texts are part of the handoff (the CRM sends them) and nothing else: never
logged, never in the audit trail or a reason; a digest identifies a message instead.

>>> plan = {"steps": [{"order": 1, "channel": "sms", "action": "meeting reminder",
...                    "wait_days": 1, "trigger": "meeting accepted", "escalation": False}],
...         "lead_properties": ["p-1"], "claims": []}
>>> rendered = render_plan(plan, "acme", "GB", removed=[])
>>> [(m["channel"], m["language"], m["text"][:24]) for m in rendered.messages], rendered.dropped
([('sms', 'en', 'acme: a reminder of your')], [])
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from jinja2 import StrictUndefined, TemplateError, TemplateNotFound, select_autoescape
from jinja2.sandbox import ImmutableSandboxedEnvironment

TEMPLATE_DIR = Path(__file__).parent / "outreach_templates"
AGENT_VERSION = "outreach-messages/1"
#: The most a message of each channel may hold (characters of its text).
MAX_TEXT = {"sms": 320, "email": 6000, "phone": 4000, "meeting_invite": 4000}
_PLACEHOLDER = re.compile(r"\{(property|evidence)\}")


class UnverifiedClaim(TemplateError):
    """A template asked for a claim the compliance check did not keep."""


@dataclass(frozen=True, slots=True)
class VerifiedClaim:
    property_id: str
    claim: str
    evidence: str
    sentence: str


@dataclass(frozen=True, slots=True)
class RenderedPlan:
    plan: dict  #: the plan without the dropped steps
    messages: list[dict]  #: :class:`~schemas.outputs.OutreachMessage` records, by step
    dropped: list[dict]  #: :class:`~schemas.outputs.DroppedStep` records


@cache
def _environment(templates: Path) -> ImmutableSandboxedEnvironment:
    from jinja2 import FileSystemLoader

    return ImmutableSandboxedEnvironment(
        loader=FileSystemLoader(templates), undefined=StrictUndefined,
        autoescape=select_autoescape(enabled_extensions=("html.j2",), default_for_string=False,
                                     default=False),
        trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=False, auto_reload=False)


@cache
def _languages() -> tuple[str, dict[str, str]]:
    data = tomllib.loads((TEMPLATE_DIR / "languages.toml").read_text())
    return data["default"], dict(data.get("countries", {}))


@cache
def phrasebook(language: str) -> dict[str, str]:
    """Claim kind -> the sentence pattern that states it, in ``language``."""
    path = TEMPLATE_DIR / f"claims.{language}.toml"
    if not path.is_file():
        return phrasebook(_languages()[0])
    return tomllib.loads(path.read_text())


def language_for(jurisdiction: str | None) -> str:
    default, countries = _languages()
    return countries.get((jurisdiction or "")[:2].upper(), default)


def _sentence(pattern: str, property_id: str, evidence: str) -> str:
    return _PLACEHOLDER.sub(lambda m: property_id if m.group(1) == "property" else evidence,
                            pattern)


def _claim_text(pattern: str, property_id: str) -> str:
    """What stating the claim says whatever its evidence: the sentence up to the evidence."""
    return _sentence(pattern.split("{evidence}", 1)[0], property_id, "").rstrip(" (")


class _Claims:
    """The plan's verified claims in one language, and the removed ones' texts."""

    def __init__(self, language: str, kept: list[dict], removed: list[dict]) -> None:
        book = phrasebook(language)
        self.verified = [VerifiedClaim(c["property_id"], c["claim"], c["evidence"],
                                       _sentence(book[c["claim"]], c["property_id"], c["evidence"]))
                         for c in kept]
        self._kept = {(c.property_id, c.claim): c for c in self.verified}
        # Removed claims, as they would read in this language: no message may contain one
        # (unless a kept claim reads the same: a fund's claim does not name a property).
        stated = {_claim_text(book[c.claim], c.property_id) for c in self.verified}
        self.forbidden = [(r, text) for r in removed
                          if (text := _claim_text(book[r["claim"]], r["property_id"])) not in stated]

    def claim(self, property_id: str, kind: str) -> str:
        found = self._kept.get((property_id, kind))
        if found is None:
            raise UnverifiedClaim(f"{kind} on {property_id}")
        return found.sentence


class _Renderer:
    def __init__(self, tenant: str, language: str, properties: list[str], kept: list[dict],
                 removed: list[dict], templates: Path) -> None:
        self.language = language
        self._env = _environment(templates)
        self._tenant, self._properties = tenant, list(properties)
        self._kept, self._removed = kept, removed
        self._claims: dict[str, _Claims] = {}

    def _templates(self, channel: str) -> tuple[str, dict]:
        """The channel's templates in the investor's language, else all in the default one
        (a message never mixes two)."""
        parts = ("subject", "txt", "html") if channel == "email" else ("txt",)
        for language in dict.fromkeys((self.language, _languages()[0])):
            try:
                return language, {part: self._env.get_template(f"{channel}.{language}.{part}.j2")
                                  for part in parts}
            except TemplateNotFound:
                continue
        raise TemplateNotFound(channel)

    def step(self, step: dict) -> dict:
        """The step's message; raises :class:`TemplateError` (or ``ValueError``) if none."""
        channel = step["channel"]
        language, templates = self._templates(channel)
        claims = self._claims.get(language)
        if claims is None:
            claims = self._claims[language] = _Claims(language, self._kept, self._removed)
        kind = "info_request" if step["trigger"] == "lead needs info" else "outreach"
        context = {"tenant": self._tenant, "properties": self._properties,
                   "claims": claims.verified, "claim": claims.claim, "step": {
                       "order": step["order"], "channel": channel, "action": step["action"],
                       "kind": kind, "wait_days": step["wait_days"],
                       "missing": step["action"].split(": ", 1)[1] if kind == "info_request"
                       else ""}}
        text = templates["txt"].render(context).strip() + "\n"
        subject = html = None
        if channel == "email":
            subject = " ".join(templates["subject"].render(context).split())
            html = templates["html"].render(context)
        limit = MAX_TEXT.get(channel, 4000)
        if len(text) > limit:
            raise ValueError(f"message longer than the {channel} limit of {limit} characters")
        everything = "\n".join(p for p in (subject, text, html) if p)
        for removed, words in claims.forbidden:
            if words and words in everything:
                raise UnverifiedClaim(f"{removed['claim']} on {removed['property_id']}, "
                                      "which the compliance check removed")
        stated = [f"{c.property_id}:{c.claim}" for c in claims.verified if c.sentence in text]
        digest = hashlib.sha256(everything.encode()).hexdigest()
        return {"order": step["order"], "channel": channel, "language": language,
                "template": f"{channel}.{language}", "subject": subject, "text": text,
                "html": html, "claims": stated, "digest": digest}


def render_plan(plan: dict, tenant: str, jurisdiction: str | None,
                removed: list[dict], templates: Path = TEMPLATE_DIR) -> RenderedPlan:
    """Each step of ``plan`` rendered; the steps that cannot be, dropped with a reason.

    ``plan`` is an :class:`~schemas.outputs.OutreachPlan` record (its ``claims`` are
    the verified ones), ``removed`` the compliance check's removed claims. ``plan``
    itself is left as it is. ``templates``: another directory of templates (tests).
    """
    renderer = _Renderer(tenant, language_for(jurisdiction), plan["lead_properties"],
                         plan["claims"], removed, templates)
    kept_steps, messages, dropped = [], [], []
    for step in plan["steps"]:
        try:
            messages.append(renderer.step(step))
        except UnverifiedClaim as error:
            dropped.append(_dropped(step, f"template states a claim the compliance check "
                                          f"did not verify: {error}"))
        except TemplateNotFound:
            dropped.append(_dropped(step, f"no message template for channel {step['channel']}"))
        except (TemplateError, ValueError) as error:  # StrictUndefined, sandbox, length
            dropped.append(_dropped(step, f"message not rendered: {type(error).__name__}: "
                                          f"{error}"))
        else:
            kept_steps.append(step)
    return RenderedPlan({**plan, "steps": kept_steps}, messages, dropped)


def _dropped(step: dict, reason: str) -> dict:
    # The reason names the template's problem, never the text (personal data stays out).
    return {"order": step["order"], "channel": step["channel"], "reason": reason[:256]}
