"""``speechmapper demo``: a Gradio page to try a trained projector in a
browser (upload or record audio, transcribe, translate, ask a question).

:mod:`.tasks` does the work without Gradio; :mod:`.page` lays it out (import
it only where Gradio is wanted)."""

from __future__ import annotations

from speechmapper_plugin.demo.tasks import TASKS as TASKS
from speechmapper_plugin.demo.tasks import DemoAnswer as DemoAnswer
from speechmapper_plugin.demo.tasks import DemoInputError as DemoInputError
from speechmapper_plugin.demo.tasks import instruction_for as instruction_for
from speechmapper_plugin.demo.tasks import run_task as run_task
