"""`mraru demo`, the main job, run as a user runs it: real Label Studio, real local LLM teacher
(llama.cpp + Gemma 3 270M), real Redis and rq worker, real Rotten Tomatoes snippets."""

import re
import subprocess
import sys

import pytest

from tests.support.processes import REPO_ROOT

pytestmark = [pytest.mark.e2e, pytest.mark.llm]


def test_demo_runs_first_round_with_local_llm(tmp_path):
    for venv in (REPO_ROOT / ".venv-ls", REPO_ROOT / ".venv-teacher"):
        if not (venv / "bin" / "python").exists():
            pytest.fail(f"{venv} is missing; run `make test` (it runs `mraru prepare`)", pytrace=False)
    env = {key: value for key, value in __import__("os").environ.items()
           if not key.startswith(("OPENAI_", "LABEL_STUDIO_", "MRARU_"))}

    completed = subprocess.run(
        [sys.executable, "-m", "backend.cli", "demo", "--exit-after-round", "--limit", "300",
         "--work-dir", str(tmp_path / "demo"), "--ls-venv", str(REPO_ROOT / ".venv-ls"),
         "--teacher-venv", str(REPO_ROOT / ".venv-teacher")],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=900,
    )
    output = completed.stdout + completed.stderr

    assert completed.returncode == 0, output[-4000:]
    assert "Label Studio is ready." in output
    picked = re.search(r"Round 1:\s+(\d+) tasks picked, (\d+) pre-labelled", output)
    assert picked, output[-4000:]
    assert int(picked.group(1)) == 20
    # Gemma 3 270M under a grammar answers only with a label, so every pick gets a pre-label.
    assert int(picked.group(2)) == 20
    assert "everything the demo started has stopped" in output
