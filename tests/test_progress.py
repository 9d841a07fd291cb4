"""Long work says where it is: "k of N" and the time left, as plain lines when not on a
terminal (and through a callback's ``step`` method when it has one)."""

from __future__ import annotations

import time

from khe_bayes.toolkit.progress import Step, format_duration
from khe_bayes.toolkit.sweep import IN_PROCESS, Task, run_tasks


def _sleep(seconds: float) -> dict:
    time.sleep(seconds)
    return {"slept": seconds}


def test_in_process_sweep_reports_k_of_n_and_time_left():
    tasks = [Task(f"model__dataset_{i}", _sleep, (0.05,)) for i in range(3)]
    messages: list[str] = []
    run_tasks(tasks, IN_PROCESS, messages.append)
    assert messages[0] == "1 of 3: model, dataset_0"  # nothing finished: no estimate yet
    assert messages[1].startswith("2 of 3: model, dataset_1 (about ")
    assert messages[1].endswith(" s left)")
    assert messages[2].startswith("3 of 3: model, dataset_2 (about ")
    assert messages[3].startswith("3 of 3 done in ")


def test_a_callback_with_a_step_method_gets_structured_steps():
    class Recorder:
        def __init__(self):
            self.steps: list[Step] = []

        def __call__(self, message: str) -> None:
            raise AssertionError("sweeps should report steps, not lines")

        def step(self, step: Step) -> None:
            self.steps.append(step)

    recorder = Recorder()
    run_tasks([Task(f"t{i}", _sleep, (0.0,)) for i in range(2)], IN_PROCESS, recorder)
    assert [(s.done, s.total) for s in recorder.steps] == [(0, 2), (1, 2), (2, 2)]
    assert recorder.steps[-1].finished and recorder.steps[1].seconds_left is not None


def test_durations_read_as_minutes_and_hours():
    assert format_duration(42.4) == "42 s"
    assert format_duration(125) == "2 min 05 s"
    assert format_duration(3 * 3600 + 120) == "3 h 02 min"
