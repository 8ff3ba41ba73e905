"""`inhouse tune start | status | logs | cancel | eval | merge`: fine-tuning jobs, on the server.

`tune start` queues a job and, unless `--detach`, trains it in the foreground with a progress
line (step, loss, tokens/s, ETA); Ctrl-C cancels it. If another runner (a running `inhouse
serve`) has taken it, the command follows its progress instead. With `--detach` the job
waits for `inhouse serve`, which trains queued jobs one at a time.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from inhouse.audit.trail import AuditTrail
from inhouse.auth.authenticate import local_operator
from inhouse.auth.policy import Principal
from inhouse.cli.context import audited_store, cli_actor
from inhouse.cli.options import ConfigOpt, HomeOpt, refusals, settings_from
from inhouse.config import Settings
from inhouse.models.store import ModelStore
from inhouse.store.db import Database
from inhouse.tuning.gate import local_evaluator
from inhouse.tuning.jobs import FINISHED, Hyperparameters, JobRequest, JobService
from inhouse.tuning.lora_merge import merge_lora
from inhouse.tuning.peft_files import read_peft_adapter
from inhouse.tuning.runner import JobRunner
from inhouse.tuning.workspace import FINAL, job_dir

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]
FOLLOW_POLL_S = 1.0


@dataclass
class _Tuning:
    settings: Settings
    db: Database
    audit: AuditTrail
    jobs: JobService

    def runner(self) -> JobRunner:
        models = ModelStore(self.settings.home)
        evaluator = local_evaluator(self.settings, models)
        return JobRunner(
            self.db, self.audit, models, self.settings.home, self.settings.tuning, evaluator
        )


@contextmanager
def _tuning(config: Any, home: Any) -> Iterator[_Tuning]:
    settings = settings_from(config, home)
    with refusals(), audited_store(settings) as (db, audit):
        models = ModelStore(settings.home)
        models.ensure_default()  # the embedded model, as `serve` registers it
        yield _Tuning(settings, db, audit, JobService(db, audit, models))


def _operator() -> Principal:
    return local_operator()


def register(tune_app: typer.Typer) -> None:
    """Add the job commands to `inhouse tune`."""
    tune_app.command("start")(start)
    tune_app.command("status")(status)
    tune_app.command("logs")(logs)
    tune_app.command("cancel")(cancel)
    tune_app.command("eval")(evaluate)
    tune_app.command("merge")(merge)


def start(
    name: str,
    base: Annotated[str, typer.Option("--base", help="The model to tune (name or alias).")],
    data: Annotated[str, typer.Option("--data", help="The data set (name or file id).")],
    eval_data: Annotated[
        str | None,
        typer.Option("--eval-data", help="A data set of held-out examples to evaluate on."),
    ] = None,
    method: Annotated[str, typer.Option("--method", help="Only lora for now.")] = "lora",
    rank: Annotated[int, typer.Option("--rank", min=1, max=256)] = 16,
    alpha: Annotated[float | None, typer.Option("--alpha", help="Default: 2 x rank.")] = None,
    epochs: Annotated[int, typer.Option("--epochs", min=1, max=100)] = 3,
    learning_rate: Annotated[float, typer.Option("--lr", help="Peak learning rate.")] = 2e-4,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, max=256)] = 8,
    max_length: Annotated[int, typer.Option("--max-length", min=16, max=8192)] = 256,
    eval_split: Annotated[
        float,
        typer.Option("--eval-split", help="Held out when the data set has no eval split."),
    ] = 0.1,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    scorer: Annotated[
        str, typer.Option("--scorer", help="exact | contains | regex:PATTERN | json:FIELD")
    ] = "contains",
    continue_from: Annotated[
        str | None, typer.Option("--from", help="A succeeded job to continue from.")
    ] = None,
    detach: Annotated[
        bool, typer.Option("--detach", help="Queue it for `inhouse serve` and return.")
    ] = False,
    config: ConfigOpt = None,
    home: HomeOpt = None,
) -> None:
    """Fine-tune BASE on a data set as model NAME, with a progress line; Ctrl-C cancels."""
    hyper = Hyperparameters(
        epochs=epochs,
        rank=rank,
        alpha=alpha,
        learning_rate=learning_rate,
        batch_size=batch_size,
        max_length=max_length,
        eval_split=eval_split,
        seed=seed,
    )
    request = JobRequest(base, data, name, method, hyper, scorer, continue_from, eval_data)
    with _tuning(config, home) as tuning:
        job = tuning.jobs.create(_operator(), request, actor=cli_actor())
        typer.echo(f"{job['name']} ({job['id']}): queued")
        if detach:
            typer.echo("`inhouse serve` trains it; follow it with `inhouse tune logs --follow`")
            return
        final = _train_here(tuning, job["id"])
        typer.echo()
        _summary(final)
        if final["status"] != "succeeded":
            raise typer.Exit(1)


def _train_here(tuning: _Tuning, public_id: str) -> dict[str, Any]:
    """Train the job in this process, or follow it if another runner took it first."""
    runner = tuning.runner()
    job_id = runner.claim(public_id)
    if job_id is None:
        typer.echo("another runner has it; following its progress (Ctrl-C stops following)")
        return _follow(tuning.jobs, public_id)
    try:
        runner.run(job_id, on_progress=_progress_line)
    except KeyboardInterrupt:
        typer.echo("\ncancelled")
        raise typer.Exit(130) from None
    return tuning.jobs.get(_operator(), public_id)


def status(
    name: Annotated[str | None, typer.Argument(help="A job; default: every job.")] = None,
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
    home: HomeOpt = None,
) -> None:
    """A job's state, progress and evaluation; without NAME, every job."""
    with _tuning(config, home) as tuning:
        jobs = [tuning.jobs.get(_operator(), name)] if name else tuning.jobs.jobs(_operator())
    if as_json:
        typer.echo(json.dumps(jobs if name is None else jobs[0], indent=2))
        return
    for job in jobs:
        _summary(job)


def logs(
    name: str,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Wait for new events.")] = False,
    config: ConfigOpt = None,
    home: HomeOpt = None,
) -> None:
    """A job's events, oldest first; --follow waits for more until the job ends."""
    with _tuning(config, home) as tuning:
        after = _print_events(tuning.jobs, name, 0)
        while follow and tuning.jobs.get(_operator(), name)["status"] not in FINISHED:
            time.sleep(FOLLOW_POLL_S)
            after = _print_events(tuning.jobs, name, after)
        if follow:
            _print_events(tuning.jobs, name, after)


def cancel(name: str, config: ConfigOpt = None, home: HomeOpt = None) -> None:
    """Cancel a queued or running job (its trainer is stopped within seconds)."""
    with _tuning(config, home) as tuning:
        job = tuning.jobs.cancel(_operator(), name, actor=cli_actor())
    typer.echo(f"{job['name']}: {job['status']}")


def evaluate(name: str, config: ConfigOpt = None, home: HomeOpt = None) -> None:
    """Evaluate a trained job again: base vs tuned on its held-out split, through the engine."""
    with _tuning(config, home) as tuning:
        job = tuning.jobs.get(_operator(), name)
        if job["status"] != "succeeded":
            typer.secho(f"error: {name} has not succeeded ({job['status']})", fg="red", err=True)
            raise typer.Exit(2)
        job_id = tuning.jobs.row_id(job["id"])
        evaluation = tuning.runner().evaluate(job_id)
    _print_evaluation(evaluation)


def merge(
    name: str,
    out: Path,
    import_as: Annotated[
        str | None, typer.Option("--import-as", help="Also import it as this model.")
    ] = None,
    config: ConfigOpt = None,
    home: HomeOpt = None,
) -> None:
    """Write a trained job's model as one GGUF file: its base with the adapter merged in."""
    with _tuning(config, home) as tuning:
        job = tuning.jobs.get(_operator(), name)
        if job["status"] != "succeeded":
            typer.secho(f"error: {name} has not succeeded ({job['status']})", fg="red", err=True)
            raise typer.Exit(2)
        models = ModelStore(tuning.settings.home)
        tensors, lora = read_peft_adapter(job_dir(tuning.settings.home, job["id"]) / FINAL)
        merge_lora(tensors, lora, models.resolve(job["model"]).path, out)
        typer.echo(f"wrote {out} ({out.stat().st_size / 2**20:.0f} MiB)")
        if import_as:
            record = models.import_file(out, import_as)
            typer.echo(f"imported as {record.name}")


def _follow(jobs: JobService, public_id: str) -> dict[str, Any]:
    while True:
        job = jobs.get(_operator(), public_id)
        if job["status"] in FINISHED:
            return job
        if job["progress"]:
            _progress_line(job["progress"])
        time.sleep(FOLLOW_POLL_S)


def _progress_line(line: dict[str, Any]) -> None:
    if line.get("type") != "progress":
        return
    step, total = int(line["step"]), max(1, int(line["total_steps"]))
    width = 24
    filled = width * step // total
    bar = "#" * filled + "-" * (width - filled)
    eta = int(line.get("eta_s") or 0)
    typer.echo(
        f"\r[{bar}] step {step}/{total} loss {line['loss']:.4f} "
        f"lr {line['learning_rate']:.2e} {line.get('tokens_per_s', 0):.0f} tok/s "
        f"ETA {eta // 60}m{eta % 60:02d}s ",
        nl=False,
    )


def _print_events(jobs: JobService, name: str, after: int) -> int:
    for event in jobs.events(_operator(), name, after=after, limit=1000):
        stamp = time.strftime("%H:%M:%S", time.localtime(event["created_at"]))
        typer.echo(f"{stamp} {event['level']:5} {event['message']}")
        after = event["seq"]
    return after


def _summary(job: dict[str, Any]) -> None:
    progress = job.get("progress") or {}
    line = f"{job['name']} ({job['id']}): {job['status']}, base {job['model']}"
    if progress.get("step"):
        line += f", step {progress['step']}/{progress['total_steps']}, loss {progress['loss']:.4f}"
    if job.get("trained_tokens"):
        line += f", {job['trained_tokens']} tokens trained"
    typer.echo(line)
    if job.get("error"):
        typer.echo(f"  error: {job['error']['message']}")
    if job.get("evaluation"):
        _print_evaluation(job["evaluation"])


def _print_evaluation(evaluation: dict[str, Any]) -> None:
    if "error" in evaluation:
        typer.echo(f"  evaluation failed: {evaluation['error']}")
        return
    for side in ("base", "tuned"):
        numbers = evaluation.get(side) or {}
        typer.echo(
            f"  {side:5}  loss {numbers.get('loss', float('nan')):.4f}  "
            f"score {numbers.get('score', float('nan')):.3f}  on {numbers.get('n', '?')} examples"
        )
    verdict = "passes" if evaluation.get("passed") else "does not pass"
    typer.echo(f"  gate: {verdict}" + "".join(f"; {r}" for r in evaluation.get("reasons", [])))
