"""The CLI speaks of its own commands: the missing step first, the next command after each."""

from __future__ import annotations

from pathlib import Path

from tests.helpers.cli import run_cli, run_cli_json
from tests.helpers.fake_llm import FakeLLMServer
from tests.integration.test_generation_service import document


def last_line(text: str) -> str:
    return text.strip().splitlines()[-1]


def test_missing_steps_name_the_command_in_the_order_that_helps(
        home: Path, tiny_model_dir: Path) -> None:
    project = run_cli_json(home, "project", "create", "Guided")["id"]
    train = run_cli(home, "train", "Guided", "--max-steps", "5")
    assert train.returncode == 1 and len(train.stderr.splitlines()) == 1
    assert "No base model is chosen: run finetuneflow model set Guided MODEL" in train.stderr
    assert "Model step" not in train.stderr and "Log every" not in train.stderr

    run_cli_json(home, "model", "set", project, str(tiny_model_dir))
    no_data = run_cli(home, "train", project, "--max-steps", "5")
    assert no_data.returncode == 1
    assert f"no examples to train on: run finetuneflow ingest {project}" in no_data.stderr

    generate = run_cli(home, "generate", project, "--preview")
    assert f"no chunks yet: run finetuneflow ingest {project} FILE_OR_FOLDER" in generate.stderr
    for command in (["export", project], ["chat", project, "Hello?"]):
        result = run_cli(home, *command)
        assert result.returncode == 1, command
        assert (f"no finished training run: run finetuneflow train {project}"
                in last_line(result.stderr))


def test_each_step_ends_with_the_next_command_and_reused_settings_are_announced(
        home: Path, tiny_model_dir: Path, tmp_path: Path) -> None:
    project = run_cli_json(home, "project", "create", "Walk")["id"]
    model = run_cli(home, "model", "set", "Walk", str(tiny_model_dir))
    assert last_line(model.stderr) == "Next: finetuneflow ingest Walk FILE_OR_FOLDER"
    ingest = run_cli(home, "ingest", "Walk", str(document(tmp_path)), "--chunk-tokens", "400")
    assert last_line(ingest.stderr) == "Next: finetuneflow generate Walk --preview"
    task = run_cli(home, "task", "set", "Walk", "qa")
    assert last_line(task.stderr) == "Next: finetuneflow generate Walk --preview"
    with FakeLLMServer() as server:
        preview = run_cli(home, "generate", "Walk", "--preview", "--provider", "ollama",
                          "--base-url", server.base_url, "--llm", "gpt-oss:20b")
        assert preview.returncode == 0, preview.stderr
        assert "Using the LLM" not in preview.stderr  # the flags said which
        assert last_line(preview.stderr) == "Next: finetuneflow generate Walk --full"
        full = run_cli(home, "generate", "Walk", "--full", "--max-chunks", "2")
        assert full.returncode == 0, full.stderr
    assert (f"Using the LLM from last time: ollama at {server.base_url}, model gpt-oss:20b, "
            "2 at once" in full.stderr)
    assert last_line(full.stderr) == "Next: finetuneflow train Walk"
    exported = run_cli(home, "dataset", "export", "Walk")
    assert last_line(exported.stderr) == "Next: finetuneflow train Walk"
    assert run_cli_json(home, "project", "status", project)["next_step"] == "train"


def test_concurrency_defaults_are_the_apps(home: Path) -> None:
    from finetuneflow.core.generation.settings import DEFAULT_CONCURRENCY

    shown = " ".join(run_cli(home, "generate", "--help").stdout.split())
    for provider, count in DEFAULT_CONCURRENCY.items():
        assert f"{count} for {provider}" in shown


def test_chat_says_it_is_loading(home: Path, tiny_model_dir: Path) -> None:
    project = run_cli_json(home, "project", "create", "Talk")["id"]
    run_cli_json(home, "model", "set", project, str(tiny_model_dir))
    chat = run_cli(home, "chat", project, "Hello?", "--base", "--max-tokens", "3")
    assert chat.stderr.startswith("Loading the base model…"), chat.stderr
