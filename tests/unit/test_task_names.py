"""Tasks are rung by name: a name that matches no registered task, or a task on a queue
no worker reads, is a message that waits forever. Names follow their modules, so a log
line's task name says which file to open."""

from __future__ import annotations

import importlib

import pytest

from schedules.beat import BEAT_SCHEDULE
from services import ports
from tasks.app import TASK_MODULES, app
from tasks.doorbell import QUEUES, ROUTES

for module in TASK_MODULES:
    importlib.import_module(module)


@pytest.mark.parametrize("name", ports.TASKS)
def test_each_door_is_a_task_named_after_its_module_and_function(name):
    task = app.tasks[name]
    assert f"{task.run.__module__}.{task.run.__name__}" == name


def test_every_task_is_routed_to_the_queue_it_has_always_run_on():
    # The queues of the release before the rename: a worker reading them all keeps working
    assert ROUTES == {
        "tasks.intake.apply_events": "intake",
        "tasks.plan.plan_stream": "plan",
        "tasks.plan.sweep_streams": "plan",
        "tasks.campaigns.run_due_campaigns": "plan",
        "tasks.campaigns.run_campaign": "plan",
        "tasks.relay.relay": "relay",
        "tasks.expiry.expire_overdue": "relay",
        "tasks.send.send_deliveries": "send",
        # new with code sync (rule 15): a queue of its own, so a slow shop holds no sender
        "tasks.sync.sync_codes": "sync",
        "tasks.sync.remove_codes": "sync",
    }
    assert set(ROUTES) == set(ports.TASKS) and set(ROUTES.values()) == set(QUEUES)


def test_the_configured_app_routes_a_delay_as_the_doorbell_rings():
    from config.settings import load_settings
    from tasks.app import configure

    configure(load_settings())
    for name, queue in ROUTES.items():
        assert app.amqp.router.route({}, name, (), {})["queue"].name == queue


def test_beat_rings_only_tasks_that_exist():
    assert {job["task"] for job in BEAT_SCHEDULE.values()} <= set(ports.TASKS)
