"""The Cloud API stand-in refuses what Meta refuses, in Meta's words: a stand-in that
accepts anything would let a broken template message pass every test."""

from __future__ import annotations

import json
import subprocess
import sys
from copy import deepcopy

import pytest
import requests

from tests.standins.whatsapp_cloud import PHONE_NUMBER_ID, TOKEN, Template, WhatsAppCloudStandIn

GOOD = {
    "messaging_product": "whatsapp",
    "recipient_type": "individual",
    "to": "+6281234567890",
    "type": "template",
    "template": {
        "name": "kupon_belanja_lagi",
        "language": {"code": "id"},
        "components": [
            {"type": "body", "parameters": [{"type": "text", "text": t}
                                            for t in ("Sari", "Serum", "Diskon 30%", "1 Desember 2026")]},
            {"type": "button", "sub_type": "copy_code", "index": 0,
             "parameters": [{"type": "coupon_code", "coupon_code": "ABCDEFGHJKMNPQR"}]},
        ],
    },
}


@pytest.fixture()
def stand_in():
    with WhatsAppCloudStandIn([Template("kupon_belanja_lagi", "id", parameters=4)]) as server:
        yield server


def post(stand_in, body, *, path=f"/v23.0/{PHONE_NUMBER_ID}/messages", token=TOKEN):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = requests.post(stand_in.api_url + path, json=body, headers=headers, timeout=5)
    return response.status_code, response.json()


def refused(stand_in, body, **kwargs) -> tuple[int, int, str]:
    before = len(stand_in.accepted)
    status, answer = post(stand_in, body, **kwargs)
    error = answer["error"]
    # Meta's error object: message "(#code) title", type, code, error_data.details, fbtrace_id.
    assert set(error) == {"message", "type", "code", "error_data", "fbtrace_id"}
    assert error["message"].startswith(f"(#{error['code']}) ")
    assert error["error_data"]["messaging_product"] == "whatsapp"
    assert len(stand_in.accepted) == before  # a refused message is not delivered
    return status, error["code"], error["error_data"]["details"]


def changed(**template_changes) -> dict:
    body = deepcopy(GOOD)
    body["template"].update(template_changes)
    return body


def test_a_template_message_as_meta_documents_it_is_accepted_and_recorded(stand_in):
    status, answer = post(stand_in, GOOD)
    assert status == 200
    assert answer["messaging_product"] == "whatsapp"
    assert answer["contacts"] == [{"input": "+6281234567890", "wa_id": "6281234567890"}]
    assert answer["messages"][0]["id"].startswith("wamid.")
    (message,) = stand_in.accepted
    assert (message.template, message.language, message.coupon_code) == ("kupon_belanja_lagi", "id",
                                                                         "ABCDEFGHJKMNPQR")
    assert message.body == ("Sari", "Serum", "Diskon 30%", "1 Desember 2026")


@pytest.mark.parametrize(
    ("kwargs", "status", "code"),
    [
        ({"token": None}, 401, 190),
        ({"token": "EAAJBsomeoneelse"}, 401, 190),
        ({"path": "/v23.0/999999999/messages"}, 400, 100),
        ({"path": f"/23.0/{PHONE_NUMBER_ID}/messages"}, 400, 2500),
    ],
)
def test_the_token_the_version_and_the_phone_number_id_are_checked(stand_in, kwargs, status, code):
    assert refused(stand_in, GOOD, **kwargs)[:2] == (status, code)


def _without(key: str) -> dict:
    body = deepcopy(GOOD)
    del body[key]
    return body


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (_without("messaging_product"), 400, 100),
        ({**GOOD, "messaging_product": "sms"}, 400, 100),
        ({**GOOD, "recipient_type": "group"}, 400, 100),
        (_without("to"), 400, 131008),
        ({**GOOD, "to": "not a number"}, 400, 131009),
        # Free text outside a conversation: Meta wants a template (re-engagement).
        ({**_without("template"), "type": "text", "text": {"body": "Your code"}}, 400, 131047),
        (changed(name="repurchase_coupon"), 404, 132001),
        (changed(language={"code": "en_US"}), 404, 132001),
        (changed(language="id"), 400, 131008),
        (changed(name=""), 400, 131008),
    ],
)
def test_what_meta_refuses_is_refused_with_its_code(stand_in, body, status, code):
    assert refused(stand_in, body)[:2] == (status, code)


@pytest.mark.parametrize(("state", "code"), [("PAUSED", 132015), ("DISABLED", 132016), ("PENDING", 132001),
                                             ("REJECTED", 132001)])
def test_only_approved_templates_are_sent(stand_in, state, code):
    stand_in.set_status("kupon_belanja_lagi", "id", state)
    assert refused(stand_in, GOOD)[1] == code


def _body_texts(*texts) -> dict:
    body = deepcopy(GOOD)
    body["template"]["components"][0]["parameters"] = [{"type": "text", "text": t} for t in texts]
    return body


def test_the_body_has_exactly_the_templates_parameters(stand_in):
    status, code, details = refused(stand_in, _body_texts("Sari", "Serum", "Diskon 30%"))
    assert (status, code) == (400, 132000)
    assert "(3)" in details and "(4)" in details
    assert refused(stand_in, _body_texts("Sari", "Serum", "Diskon", "1 Des", "extra"))[1] == 132000


@pytest.mark.parametrize("text", ["Sari\nDewi", "Sari\tDewi", "Sari     Dewi"])
def test_a_parameter_with_a_newline_a_tab_or_five_spaces_is_refused(stand_in, text):
    status, code, details = refused(stand_in, _body_texts(text, "Serum", "Diskon", "1 Des"))
    assert (status, code) == (400, 100) and "new-line" in details


def test_an_empty_or_non_text_parameter_is_refused(stand_in):
    assert refused(stand_in, _body_texts("", "Serum", "Diskon", "1 Des"))[1] == 131008
    body = _body_texts("Sari", "Serum", "Diskon", "1 Des")
    body["template"]["components"][0]["parameters"][0] = {"type": "currency", "currency": {}}
    assert refused(stand_in, body)[1] == 132012


def _button(**changes) -> dict:
    body = deepcopy(GOOD)
    body["template"]["components"][1].update(changes)
    return body


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (_button(parameters=[{"type": "coupon_code", "coupon_code": "ABCDE-FGHJK-MNPQR"}]), 131009),
        (_button(parameters=[{"type": "coupon_code", "coupon_code": "ABCDEFGHJKMNPQRS"}]), 131009),
        (_button(parameters=[{"type": "text", "text": "ABCDEFGHJKMNPQR"}]), 132012),
        (_button(parameters=[]), 132000),
        (_button(index=1), 131009),
        (_button(sub_type="url"), 132000),
    ],
)
def test_the_copy_code_button_carries_one_code_of_at_most_15_letters_and_digits(stand_in, body, code):
    assert refused(stand_in, body)[1] == code


def test_the_copy_code_button_is_required_and_its_index_may_be_a_digit_string(stand_in):
    body = deepcopy(GOOD)
    body["template"]["components"].pop()
    assert refused(stand_in, body)[1] == 132000
    assert post(stand_in, _button(index="0"))[0] == 200
    assert post(stand_in, _button(sub_type="COPY_CODE"))[0] == 200  # Meta's page writes it in capitals


def test_a_body_too_long_once_filled_is_refused():
    long_text = "Halo {{1}}, " + "x" * 1000 + " {{2}} {{3}} {{4}}"
    with WhatsAppCloudStandIn([Template("kupon_belanja_lagi", "id", text=long_text)]) as stand_in:
        assert refused(stand_in, GOOD)[1] == 132005


def test_faults_answer_valid_requests_for_the_next_n_or_for_one_recipient(stand_in):
    stand_in.fail_next(130429, times=2, headers={"Retry-After": "7"})
    response = requests.post(stand_in.api_url + f"/v23.0/{PHONE_NUMBER_ID}/messages", json=GOOD,
                             headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5)
    assert response.status_code == 429 and response.headers["Retry-After"] == "7"
    assert response.json()["error"]["code"] == 130429
    assert post(stand_in, GOOD)[0] == 429
    assert post(stand_in, GOOD)[0] == 200

    stand_in.fail_recipient("+62 812-3456-7890", 131026)
    assert refused(stand_in, GOOD)[:2] == (400, 131026)
    assert post(stand_in, {**GOOD, "to": "+6289876543210"})[0] == 200


def test_a_fault_never_hides_a_broken_request(stand_in):
    # Validation comes first: a test injecting 131026 still learns its body was wrong.
    stand_in.fail_next(131026)
    assert refused(stand_in, _body_texts("Sari"))[1] == 132000


def test_the_command_line_stand_in_serves_another_process():
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.standins.whatsapp_cloud", "--port", "0",
         "--template", "id:kupon_belanja_lagi:4", "--fail-recipient", "+6289876543210:131026"],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        line = process.stdout.readline()
        assert line.startswith("listening 127.0.0.1:"), line
        base = "http://" + line.split()[1]
        url = f"{base}/v23.0/{PHONE_NUMBER_ID}/messages"
        headers = {"Authorization": f"Bearer {TOKEN}"}
        assert requests.post(url, json=GOOD, headers=headers, timeout=5).status_code == 200
        answer = requests.post(url, json={**GOOD, "to": "+6289876543210"}, headers=headers, timeout=5)
        assert answer.json()["error"]["code"] == 131026
        requests.post(f"{base}/_standin/faults", json={"code": 132015, "times": 1}, timeout=5)
        assert requests.post(url, json=GOOD, headers=headers, timeout=5).json()["error"]["code"] == 132015
        listing = requests.get(f"{base}/_standin/messages", timeout=5).json()
        assert [(m["to"], m["coupon_code"]) for m in listing] == [("+6281234567890", "ABCDEFGHJKMNPQR")]
    finally:
        process.terminate()
        out, _ = process.communicate(timeout=10)
    assert "accepted 1, refused 2" in out


def test_the_error_body_is_json_meta_shaped_even_for_an_unknown_path(stand_in):
    response = requests.get(stand_in.api_url + "/nothing", timeout=5)
    assert response.status_code == 400
    assert json.loads(response.content)["error"]["code"] == 100
