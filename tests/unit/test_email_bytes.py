"""The hand-written email equals, byte for byte, what the standard library's MIME
classes write (channels.smtp: the fast path of the send hot path), and reads back as
the message it was built from."""

from __future__ import annotations

from email import charset as email_charset
from email import policy
from email.parser import BytesParser

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from channels.smtp import SmtpSettings, _write_email, build_email, build_email_with_generator
from coupons.model import Message

SHOP = SmtpSettings(host="smtp.example.com", port=25, secure_mode="insecure", user=None, password=None,
                    from_name="Shop", from_addr="shop@example.com")
FIXED = dict(boundary="=_encore_0123456789abcdef01234567", date="Tue, 24 Nov 2026 23:07:06 +0000",
             message_id="<179556162608.26940.15950701316275408287@example.com>")

MESSAGES = {
    "english": Message(text="Hi Ann,\nyour code ABCDE-FGHJK-MNPQR\n" * 5, subject="Your refill is 30% off",
                       html="<p>Hi Ann</p>" * 40),
    "arabic, folded subject": Message(text="مرحبا\n" * 10, subject="عرض خاص لك: خصم 30٪ على إعادة التعبئة حتى نهاية الأسبوع",
                                      html="<p dir=\"rtl\">مرحبا</p>" * 30),
    "thai": Message(text="สวัสดี", subject="ข้อเสนอพิเศษ", html="<p>สวัสดี</p>"),
    "long ascii subject": Message(text="t", subject="A long ASCII subject that goes beyond the seventy-eight column limit",
                                  html="<b>h</b>"),
    "text only": Message(text="plain only, é", subject="Hello", html=None),
    "no subject": Message(text="x", subject=None, html="<i>x</i>"),
}


@pytest.fixture()
def stdlib_utf8_defaults():
    """Apprise's email plugin re-registers utf-8 as quoted-printable when it is imported
    (a process-wide change); the reference here is the standard library's own default."""
    saved = email_charset.CHARSETS["utf-8"]
    email_charset.add_charset("utf-8", email_charset.SHORTEST, email_charset.BASE64, "utf-8")
    yield
    email_charset.CHARSETS["utf-8"] = saved


@pytest.mark.usefixtures("stdlib_utf8_defaults")
@pytest.mark.parametrize("message", MESSAGES.values(), ids=MESSAGES.keys())
@pytest.mark.parametrize("sender", [SHOP, SmtpSettings(**{**SHOP.__dict__, "from_name": "Tienda Año"})],
                         ids=["ascii name", "non-ascii name"])
@pytest.mark.parametrize("to_addr", ["ann@example.com", "josé@example.com"])
def test_the_written_email_equals_the_standard_librarys(message, sender, to_addr):
    assert _write_email(message, sender, to_addr, **FIXED) == build_email_with_generator(message, sender, to_addr,
                                                                                         **FIXED)


def test_each_email_has_its_own_boundary_and_message_id():
    first, second = (build_email(MESSAGES["english"], SHOP, "ann@example.com") for _ in range(2))
    assert first.split(b"\r\n", 2)[:2] != second.split(b"\r\n", 2)[:2]
    assert [line for line in first.split(b"\r\n") if line.startswith(b"Message-ID")] != \
        [line for line in second.split(b"\r\n") if line.startswith(b"Message-ID")]


@pytest.mark.parametrize("message", MESSAGES.values(), ids=MESSAGES.keys())
def test_the_written_email_reads_back_as_the_message(message):
    parsed = BytesParser(policy=policy.default).parsebytes(build_email(message, SHOP, "ann@example.com"))
    assert (parsed["Subject"] or "") == (message.subject or "")
    assert (parsed["From"], parsed["To"]) == ("Shop <shop@example.com>", "ann@example.com")
    assert parsed.get_body(("plain",)).get_content() == message.text
    html = parsed.get_body(("html",))
    assert (html.get_content() if html is not None and message.html else None) == message.html


@pytest.mark.usefixtures("stdlib_utf8_defaults")
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=st.one_of(
    st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=300),
    st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=40, max_size=300),
    st.builds(lambda token: f"<https://shop.example.com/unsubscribe/{token}>",
              st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.", max_size=200)),
))
def test_any_ascii_header_value_is_folded_as_the_standard_library_folds_it(value):
    # List-Unsubscribe carries a per-customer URL, usually longer than a header line
    message = Message(text="t", subject="s", html="<b>h</b>",
                      headers=(("List-Unsubscribe", value), ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click")))
    assert _write_email(message, SHOP, "ann@example.com", **FIXED) == \
        build_email_with_generator(message, SHOP, "ann@example.com", **FIXED)
