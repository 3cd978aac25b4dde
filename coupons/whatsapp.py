"""WhatsApp coupons as Meta accepts them outside a conversation (SPEC rule 16).

Outside a 24-hour customer-service window the WhatsApp Cloud API takes only the
seller's approved templates, and a coupon template is a MARKETING template with a
copy-code button. This module reads the seller's templates file, picks the template
for a customer's language, fills its body parameters from the same values the
localized text uses (`coupons.messages.fill_values`), and writes the Cloud API's
request body. Pure: nothing here talks to Meta, and only `load_templates` reads a file.

What it relies on (see channels/WHATSAPP.md for the full list of sources):
- Coupon code templates, the send request and its copy-code button (`sub_type`
  copy_code, a zero-based `index`, one `coupon_code` parameter, alphanumeric, at most
  15 characters):
  https://developers.facebook.com/documentation/business-messaging/whatsapp/templates/marketing-templates/coupon-templates
  https://developers.secure.facebook.com/docs/whatsapp/cloud-api/guides/send-message-templates/coupon-templates
- Template names (lowercase letters, digits and underscores, at most 512) and the
  body's 1,024 characters: the same pages and
  https://developers.facebook.com/documentation/business-messaging/whatsapp/templates/components
- Marketing templates are not delivered to US (+1) numbers since 1 April 2025:
  https://docs.aws.amazon.com/end-user-messaging/latest/userguide/nx-features-whatsapp-templates.md
  (pointing at Meta's "Per-User Marketing Template Message Limits").
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from coupons.errors import ConfigError
from coupons.messages import LANGUAGES, fill_values
from coupons.model import MessageContext, WhatsAppTemplateMessage

BODY_VALUES: tuple[str, ...] = ("customer_name", "product", "offer", "expires", "code", "shop")
"""What a template's body parameter can be filled with; the file's `body` names them."""

DEFAULT_BODY: tuple[str, ...] = ("customer_name", "product", "offer", "expires")
"""{{1}}..{{4}} when a template's `body` is not given (SPEC rule 16)."""

MAX_COUPON_CODE = 15  # Meta: the copy-code button's code
MAX_TEMPLATE_NAME = 512  # Meta: template names
MAX_BUTTONS = 10  # Meta: buttons per template, so the copy-code button's index is 0..9
# Body parameters are shortened (with "…") to these lengths: four of them plus the
# seller's own text stay under the 1,024 characters Meta allows a body (error 132005).
MAX_NAME_PARAMETER = 60
MAX_PARAMETER = 160

_TEMPLATE_NAME = re.compile(r"[a-z0-9_]+")
_META_LANGUAGE = re.compile(r"[a-z]{2,3}(?:_[A-Za-z0-9]{2,4})?")  # en, en_US, pt_BR, es_419, fil
# Meta refuses a text parameter with newlines or tabs, or more than 4 spaces in a row.
_LINE_BREAKS = re.compile(r"[\t\n\r\v\f\x1c-\x1e\x85\u2028\u2029]+")
_SPACES = re.compile(r" {2,}")
_PHONE_FORMATTING = re.compile(r"[\s\-().]")
_TEMPLATE_FIELDS = ("name", "language", "body", "button_index")


class WhatsAppTemplatesError(ConfigError, ValueError):
    """The templates file cannot be used; the message names the file, the language
    and the field."""


@dataclass(frozen=True)
class WhatsAppTemplate:
    """One approved template, as the seller's file names it for one language."""

    language: str  # Encore's language this template speaks (en, id, ...)
    name: str  # the template's name at Meta
    meta_language: str  # its language code at Meta (en_US, id, ...)
    body: tuple[str, ...] = DEFAULT_BODY  # what fills {{1}}, {{2}}, ...
    button_index: int = 0  # where the copy-code button is among the template's buttons


@dataclass(frozen=True)
class WhatsAppTemplates:
    """The seller's templates file: one template per language and a default."""

    default: str
    templates: Mapping[str, WhatsAppTemplate]
    source: str = "ENCORE_WHATSAPP_TEMPLATES"

    def for_language(self, language: str) -> WhatsAppTemplate:
        """The template for a customer's language, else the file's default one."""
        return self.templates.get(language) or self.templates[self.default]

    def missing(self, languages: Iterable[str]) -> list[str]:
        """The languages among `languages` with no template of their own (they get
        the default's): what `encore check` names."""
        return sorted({lang for lang in languages if lang not in self.templates})


# ------------------------------------------------------------------------ the file


def load_templates(path: str | Path) -> WhatsAppTemplates:
    """Read and check the templates file; raises WhatsAppTemplatesError."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise WhatsAppTemplatesError(f"{source}: not UTF-8 text") from None
    except OSError as error:
        raise WhatsAppTemplatesError(f"{source}: cannot be read ({error.strerror or error})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise WhatsAppTemplatesError(f"{source}: not valid TOML ({error})") from None
    return parse_templates(data, source)


def parse_templates(data: Mapping[str, Any], source: str = "ENCORE_WHATSAPP_TEMPLATES") -> WhatsAppTemplates:
    """Check a parsed templates file (SPEC rule 16); raises WhatsAppTemplatesError."""

    def fail(field: str, problem: str) -> WhatsAppTemplatesError:
        return WhatsAppTemplatesError(f"{source}: {field}: {problem}")

    unknown = sorted(set(data) - {"default", "templates"})
    if unknown:
        raise fail(unknown[0], "unknown key (the file holds `default` and [templates.<language>] tables)")
    tables = data.get("templates")
    if not isinstance(tables, dict) or not tables:
        raise fail("templates", "required: at least one [templates.<language>] table")
    templates: dict[str, WhatsAppTemplate] = {}
    for language, table in tables.items():
        templates[language] = _parse_template(language, table, fail)
    default = data.get("default")
    if default is None:
        raise fail("default", "required: the language used where a customer's has no template")
    if not isinstance(default, str) or default not in templates:
        raise fail("default", f"{default!r} has no [templates.{default}] table"
                   f" (templates: {', '.join(sorted(templates))})")
    return WhatsAppTemplates(default=default, templates=templates, source=source)


def _parse_template(language: str, table: Any, fail) -> WhatsAppTemplate:
    where = f"templates.{language}"
    if language not in LANGUAGES:
        raise fail(where, f"Encore writes no {language!r} messages (languages: {', '.join(LANGUAGES)})")
    if not isinstance(table, dict):
        raise fail(where, "must be a table with name and language")
    for key in table:
        if key not in _TEMPLATE_FIELDS:
            raise fail(f"{where}.{key}", f"unknown field (fields: {', '.join(_TEMPLATE_FIELDS)})")

    name = table.get("name")
    if not isinstance(name, str) or not name:
        raise fail(f"{where}.name", "required: the approved template's name at Meta")
    if len(name) > MAX_TEMPLATE_NAME or not _TEMPLATE_NAME.fullmatch(name):
        raise fail(f"{where}.name", f"{name!r} is not a template name at Meta"
                   f" (lowercase letters, digits and _, at most {MAX_TEMPLATE_NAME})")

    meta_language = table.get("language")
    if not isinstance(meta_language, str) or not meta_language:
        raise fail(f"{where}.language", "required: the template's language code at Meta, such as en_US or id")
    if not _META_LANGUAGE.fullmatch(meta_language):
        raise fail(f"{where}.language", f"{meta_language!r} is not a language code at Meta (such as en_US or id)")

    body = table.get("body", list(DEFAULT_BODY))
    if not isinstance(body, list):
        raise fail(f"{where}.body", f"must be a list of {', '.join(BODY_VALUES)}")
    for index, value in enumerate(body):
        if value not in BODY_VALUES:
            raise fail(f"{where}.body[{index}]", f"{value!r} is not one of {', '.join(BODY_VALUES)}")

    button_index = table.get("button_index", 0)
    if type(button_index) is not int or not 0 <= button_index < MAX_BUTTONS:
        raise fail(f"{where}.button_index",
                   f"must be the copy-code button's place among the template's buttons, 0 to {MAX_BUTTONS - 1}")
    return WhatsAppTemplate(language=language, name=name, meta_language=meta_language,
                            body=tuple(body), button_index=button_index)


# ----------------------------------------------------------------------- a message


def template_message(template: WhatsAppTemplate, ctx: MessageContext) -> WhatsAppTemplateMessage:
    """The coupon of `ctx` in `template`: its body parameters said in the template's
    language (the default template speaks its own language, not the customer's) and
    in the same words and formats as the localized text, and the code without dashes."""
    if template.language != ctx.language:
        ctx = replace(ctx, language=template.language, locale=template.language)
    filled = fill_values(ctx, "whatsapp")
    values = {
        "customer_name": filled.values["name"] or filled.say("name_fallback"),
        "product": filled.values["product"],
        "offer": filled.say(filled.offer_key),
        "expires": filled.values["date"],
        "code": ctx.code,
        "shop": filled.values["shop"],
    }
    body = tuple(
        clean_parameter(values[key], MAX_NAME_PARAMETER if key == "customer_name" else MAX_PARAMETER)
        for key in template.body
    )
    return WhatsAppTemplateMessage(
        name=template.name,
        language=template.meta_language,
        body=body,
        coupon_code=copy_code(ctx.code),
        button_index=template.button_index,
    )


def clean_parameter(text: str, limit: int = MAX_PARAMETER) -> str:
    """A body parameter Meta accepts: one line (no newline or tab), no run of more
    than 4 spaces (runs become one space), at most `limit` characters ("…" at the
    end when shortened). Non-breaking spaces of local formats are kept."""
    text = _SPACES.sub(" ", _LINE_BREAKS.sub(" ", text)).strip()
    if len(text) > limit:
        text = text[: limit - 1].rstrip() + "…"
    return text


def copy_code(code: str) -> str:
    """The code for the copy-code button: Meta takes letters and digits only, at most
    15; Encore's codes are 15 symbols in dashed groups, and a pasted code without
    dashes redeems all the same (`coupons.codes.normalize_code`)."""
    compact = "".join(ch for ch in code if ch not in " -_")
    if not compact or not compact.isascii() or not compact.isalnum() or len(compact) > MAX_COUPON_CODE:
        raise ValueError(f"a copy-code button takes 1 to {MAX_COUPON_CODE} letters and digits, not {code!r}")
    return compact


def cloud_api_request(message: WhatsAppTemplateMessage, to: str) -> dict[str, Any]:
    """The body of `POST /{version}/{phone-number-id}/messages` that sends `message`
    to the E.164 number `to` (kept with its "+", as Meta's examples write it)."""
    components: list[dict[str, Any]] = []
    if message.body:
        components.append({
            "type": "body",
            "parameters": [{"type": "text", "text": text} for text in message.body],
        })
    components.append({
        "type": "button",
        "sub_type": "copy_code",
        "index": message.button_index,
        "parameters": [{"type": "coupon_code", "coupon_code": message.coupon_code}],
    })
    return {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": _PHONE_FORMATTING.sub("", to),
        "type": "template",
        "template": {
            "name": message.name,
            "language": {"code": message.language},
            "components": components,
        },
    }


WHATSAPP_US_BLOCKED = "whatsapp_us_blocked"
WHATSAPP_NO_TEMPLATE = "whatsapp_no_template"


def passed_over(number: str | None, *, needs_template: bool, has_templates: bool) -> tuple[str, str] | None:
    """Why a WhatsApp coupon to `number` is not even attempted, as (reason, detail), or
    None when it may go: a +1 number whatever the URL (SPEC rule 16), or the Cloud API
    (`needs_template`) without a templates file. The delivery moves to its next channel
    and nothing reaches the provider."""
    if is_us_blocked(number):
        return WHATSAPP_US_BLOCKED, "not sent: Meta delivers no marketing template to +1 numbers"
    if needs_template and not has_templates:
        return WHATSAPP_NO_TEMPLATE, ("not sent: the Cloud API takes only approved templates, and "
                                      "ENCORE_WHATSAPP_TEMPLATES is not set")
    return None


def is_us_blocked(number: str | None) -> bool:
    """Whether a WhatsApp number has country code +1 (the US, Canada and the rest of
    the North American plan): Meta stopped delivering marketing templates to US
    numbers on 1 April 2025, and SPEC rule 16 keeps every +1 number off WhatsApp
    coupons (their area codes are not worth telling apart)."""
    if not isinstance(number, str):
        return False
    return _PHONE_FORMATTING.sub("", number).startswith("+1")
