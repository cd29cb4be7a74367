"""How many generated rewrites reach scoring, per way of ending a rewrite: the evidence for the
rewrite defaults (OptimizerConfig.stop_at_prompt_tag, keep_cut_rewrites).

    python -m pipelines.bench_rewrites [--repeats 2] [--backend vllm]

The 4 multiple-choice BBH tasks of pipelines/studies/bbh_mc_objectives.yaml at its optimizer
settings (short meta-prompt with the `<prompt>` prefill, 2 hard cases x 2 rewrites, temperature
and top-p as the optimizer samples, max_rewrite_tokens 96), through the optimizer's own task
runs: a real masking round (the model's segmentation, ablations scored) of the initial prompt
"Let's think step by step.", then the rewrite requests the first iteration asks, generated
`--repeats` times (the seeds of successive iterations) under each option. A second parent per
task, as later iterations have, is the longest rewrite the plain option accepted from the
first, masked the same way. Every output is vetted as the optimizer vets it (the seen set grows
over the repeats, as over a run's iterations). Options that change only how an output is read
share their generation. Prints per option: rewrites generated, lost to format (no_prompt_tag or
empty) and their share, duplicates, accepted, tokens generated, accepted per 1,000 tokens.
One engine in this process; a few minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import time
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import pyarrow as pa
import yaml

from pmpo_ray.config import PromptFormat
from pmpo_ray.engines.client import open_engines
from pmpo_ray.engines.registry import BACKENDS, PoolConfig
from pmpo_ray.pmpo import rewrite
from pmpo_ray.pmpo.config import OptimizerConfig
from pmpo_ray.pmpo.records import FORMAT_REASONS
from pmpo_ray.pmpo.rewrite import CLOSING_TAG
from pmpo_ray.pmpo.rounds import run_stage
from pmpo_ray.pmpo.run_state import Phase
from pmpo_ray.pmpo.task_run import TaskRun
from pmpo_ray.requests import GENERATE_RESULT_SCHEMA
from pmpo_ray.tasks.config import TaskConfig
from pmpo_ray.tasks.task import Task, load_task

STUDY = Path(__file__).parent / "studies" / "bbh_mc_objectives.yaml"
NO_SAMPLES = GENERATE_RESULT_SCHEMA.empty_table()
NO_SCORES = pa.table({"request_id": pa.array([], pa.int64())})
# A leaner ask: the short meta-prompt's last line, asking for a prompt of a few sentences.
LEAN_ASK = (
    "The correct answer is unlikely under this prompt. Write an improved prompt of at most "
    "three sentences for the whole task (not for this one example) inside <prompt></prompt>."
)


@dataclass(frozen=True)
class Option:
    name: str
    stop: bool  # stop_at_prompt_tag
    keep_cut: bool  # keep_cut_rewrites
    lean: bool = False  # the meta-prompt's last line is LEAN_ASK
    budget_per_prompt_token: int = 0  # > 0: max_rewrite_tokens at least this x the parent's

    def generation(self, budgets: list[int]) -> tuple:
        """Options with the same generation share its outputs."""
        return (self.stop, self.lean, tuple(budgets))


OPTIONS = (
    Option("as before (budget 96)", stop=False, keep_cut=False),
    Option("keep cut at sentence end", stop=False, keep_cut=True),
    Option("stop at </prompt>", stop=True, keep_cut=False),
    Option("stop + keep cut", stop=True, keep_cut=True),
    Option("stop + keep cut + lean ask", stop=True, keep_cut=True, lean=True),
    Option("stop + budget 3x parent", stop=True, keep_cut=False, budget_per_prompt_token=3),
)


@dataclass
class Tally:
    generated: int = 0
    format_loss: int = 0
    duplicates: int = 0
    accepted: int = 0
    tokens: int = 0
    cut: int = 0  # outputs the budget ended (finish reason "length")
    closed: int = 0  # outputs in which the model wrote </prompt> itself

    def add(self, other: Tally) -> Tally:
        return Tally(*(a + b for a, b in zip(vars(self).values(), vars(other).values())))

    def line(self, name: str) -> str:
        share = self.format_loss / self.generated if self.generated else 0.0
        per_k = 1000 * self.accepted / self.tokens if self.tokens else 0.0
        other = self.generated - self.format_loss - self.duplicates - self.accepted
        return (
            f"{name:<28} {self.generated:>5} {self.cut:>5} {self.closed:>5} {self.format_loss:>5} "
            f"{share:>6.1%} "
            f"{self.duplicates:>5} {other:>5} {self.accepted:>5} {self.tokens:>7} {per_k:>8.2f}"
        )


HEADER = (
    f"{'option':<28} {'gen':>5} {'cut':>5} {'tag':>5} {'fmt':>5} {'fmt %':>6} {'dup':>5} "
    f"{'other':>5} "
    f"{'acc':>5} "
    f"{'tokens':>7} {'acc/1kt':>8}"
)


def study_settings() -> tuple[OptimizerConfig, list[Task]]:
    suite = yaml.safe_load(STUDY.read_text())["suite"]
    tasks = [load_task(TaskConfig(**entry["task"])) for entry in suite["tasks"]]
    return OptimizerConfig(**suite["optimizer"]), tasks


def masked_states(tasks: list[Task], config: OptimizerConfig, client) -> list:
    """Each task's run state after its masking round (the model's segmentation, ablations
    scored), the rewrite round next."""
    runs = [TaskRun(task, config, client.count_tokens, PromptFormat()) for task in tasks]
    generated = run_stage([run.plan_generation() for run in runs], client.generate, NO_SAMPLES)
    for run, table in zip(runs, generated):
        run.take_generations(table)
    scored = run_stage([run.plan_scoring() for run in runs], client.score, NO_SCORES)
    for run, table in zip(runs, scored):
        run.take_scores(table)
    assert all(run.state.phase == Phase.REWRITE for run in runs)
    return [run.state for run in runs]


def rewrite_runs(tasks, states, config: OptimizerConfig, option: Option, repeat: int, client):
    """A run per task at its masked state, configured by `option` for repeat `repeat`."""
    runs = []
    for task, state in zip(tasks, states):
        changed = config.model_copy(
            update={
                "stop_at_prompt_tag": option.stop,
                "keep_cut_rewrites": option.keep_cut,
                "max_rewrite_tokens": rewrite_budget(state, config, option, client),
                "seed": config.seed + repeat,  # the seeds of successive iterations
            }
        )
        run = TaskRun(task, changed, client.count_tokens, PromptFormat())
        run.state = state
        runs.append(run)
    return runs


def rewrite_budget(state, config: OptimizerConfig, option: Option, client) -> int:
    if not option.budget_per_prompt_token:
        return config.max_rewrite_tokens
    parent_tokens = client.count_tokens([state.population[0].text])[0]
    return max(config.max_rewrite_tokens, option.budget_per_prompt_token * parent_tokens)


def measure(tasks, states, config: OptimizerConfig, client, repeats: int):
    """option name -> Tally; and each task's longest rewrite accepted by the first option."""
    tallies = {option.name: Tally() for option in OPTIONS}
    seen = {option.name: [state.scored_texts for state in states] for option in OPTIONS}
    longest = [""] * len(tasks)
    generations: dict[tuple, list] = {}
    for option in OPTIONS:
        key = option.generation([rewrite_budget(s, config, option, client) for s in states])
        if key not in generations:
            started = time.perf_counter()
            generations[key] = [
                generate(tasks, states, config, option, repeat, client) for repeat in range(repeats)
            ]
            print(f"  generated for {option.name!r}: {time.perf_counter() - started:.1f} s")
        for repeat, tables in enumerate(generations[key]):
            runs = rewrite_runs(tasks, states, config, option, repeat, client)
            for index, (run, table) in enumerate(zip(runs, tables)):
                run.state = replace(run.state, scored_texts=seen[option.name][index])
                with lean_ask(option.lean):
                    run.plan_generation()
                run.take_generations(table)
                rewrites = run._pending  # the vetted round, before it is scored
                accepted = [c.text for c in rewrites.rewrites]
                reasons = [r.reason for r in rewrites.rejected]
                tallies[option.name] = tallies[option.name].add(
                    Tally(
                        generated=len(accepted) + len(reasons),
                        format_loss=sum(reason in FORMAT_REASONS for reason in reasons),
                        duplicates=reasons.count("duplicate"),
                        accepted=len(accepted),
                        tokens=sum(table.column("n_tokens").to_pylist()),
                        cut=table.column("finish_reason").to_pylist().count("length"),
                        closed=sum(
                            CLOSING_TAG in text for text in table.column("text").to_pylist()
                        ),
                    )
                )
                seen[option.name][index] = seen[option.name][index] | set(accepted)
                if option is OPTIONS[0]:
                    longest[index] = max([longest[index], *accepted], key=len)
    return tallies, longest


def generate(tasks, states, config, option: Option, repeat: int, client) -> list:
    runs = rewrite_runs(tasks, states, config, option, repeat, client)
    with lean_ask(option.lean):
        requests = [run.plan_generation() for run in runs]
    return run_stage(requests, client.generate, NO_SAMPLES)


@contextmanager
def lean_ask(lean: bool):
    """The short meta-prompt with LEAN_ASK as its last line, while the requests are built."""
    original = rewrite.META_PROMPTS["short"]
    if lean:
        lines = original.splitlines()
        rewrite.META_PROMPTS["short"] = "\n".join([*lines[:-1], LEAN_ASK])
    try:
        yield
    finally:
        rewrite.META_PROMPTS["short"] = original


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2, help="iterations' seeds per option")
    parser.add_argument("--backend", choices=list(BACKENDS), default="vllm")
    args = parser.parse_args()
    config, tasks = study_settings()
    started = time.perf_counter()
    engine = BACKENDS[args.backend].config_class()
    with open_engines(PoolConfig(engine=engine)) as client:
        states = masked_states(tasks, config, client)
        print(f"masked the initial prompts: {time.perf_counter() - started:.1f} s")
        first, longest = measure(tasks, states, config, client, args.repeats)
        later_tasks = [replace(task, initial_prompt=text) for task, text in zip(tasks, longest)]
        later_tasks = [task for task, text in zip(later_tasks, longest) if text]
        later_states = masked_states(later_tasks, config, client)
        print(f"masked {len(later_tasks)} round-1 rewrites: {time.perf_counter() - started:.1f} s")
        later, _ = measure(later_tasks, later_states, config, client, args.repeats)
    print(
        f"\n{len(tasks)} tasks x {config.hard_cases} hard cases x {config.rewrites_per_case} "
        f"rewrites x {args.repeats} repeats per parent; max_rewrite_tokens "
        f"{config.max_rewrite_tokens}, temperature {config.temperature}, top_p {config.top_p}"
    )
    print(
        "gen: rewrites generated; cut: ended by the budget; tag: outputs holding </prompt> "
        "(none where the stop string ended them there); fmt: lost to format "
        f"({' or '.join(FORMAT_REASONS)}); dup: duplicates; other: rejected otherwise (unchanged, "
        "guards, too long); acc: accepted (reach scoring)"
    )
    for title, tallies in (
        ("parent: the initial prompt", first),
        ("parent: the longest rewrite round 1 accepted", later),
        ("both parents", {name: first[name].add(later[name]) for name in first}),
    ):
        print(f"\n{title}\n{HEADER}")
        for name, tally in tallies.items():
            print(tally.line(name))
    print(f"\n{time.perf_counter() - started:.1f} s in all")


if __name__ == "__main__":
    main()
