"""The simulated backend: the real engines' table contracts, deterministic outputs the
optimizer's parsers accept, calls that last as the cost model says, and a suite on Ray that
runs the same twice."""

import json
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pytest

from pmpo_ray.engines.registry import PoolConfig, build_engine
from pmpo_ray.engines.simulated_engine import SimulatedConfig
from pmpo_ray.pmpo import masking
from pmpo_ray.pmpo.rewrite import RESPONSE_PREFILL, complete_prefilled, rewrite_request, vet_rewrite
from pmpo_ray.requests import (
    GENERATE_RESULT_SCHEMA,
    SCORE_REQUEST_SCHEMA,
    SCORE_RESULT_FIELDS,
    Example,
    generate_requests,
    score_requests,
)

PROMPT = "Think step by step. Answer yes or no. Quote the rule you used."
EXAMPLES = [
    Example(str(i), f"Case {i}: is {i * 7} divisible by three?\nOptions:\n- Yes\n- No", "No")
    for i in range(6)
]


def engine(**costs):
    zero = {"seconds_per_call": 0, "seconds_per_scored_token": 0, "seconds_per_generated_token": 0}
    return build_engine(SimulatedConfig(**{**zero, **costs}))


def scoring_table(prompts=(("a", PROMPT), ("b", "Be brief."))):
    return score_requests(list(prompts), EXAMPLES, task_id="t", kind="candidate", role="system")


def rewrite_table(style: str, n: int = 4, seed: int = 11, stop=()) -> pa.Table:
    message = rewrite_request(
        style,
        task_description="Divisibility.",
        user_input=EXAMPLES[0].input,
        true_answer="No",
        mask_analysis='- "Think step by step." helps',
        current_prompt=PROMPT,
    )
    return generate_requests(
        [("", message)],
        task_id="t",
        role="user",
        prefill=RESPONSE_PREFILL[style],
        n=n,
        temperature=0.9,
        seed=seed,
        stop=stop,
    )


def test_configs_name_the_backend_and_plan_no_model():
    config = PoolConfig.model_validate({"engine": {"backend": "simulated"}}).engine
    assert isinstance(config, SimulatedConfig) and config.loads_model is False
    with pytest.raises(ValueError):
        PoolConfig.model_validate({"engine": {"backend": "simulated", "kv_cache_gib": 1}})


def test_scoring_keeps_the_rows_and_adds_the_result_columns_deterministically():
    requests = scoring_table()
    scored = engine().score(requests)
    expected = [*SCORE_REQUEST_SCHEMA.names, *(field.name for field in SCORE_RESULT_FIELDS)]
    assert scored.column_names == expected
    assert scored.slice(0, 0).select(SCORE_REQUEST_SCHEMA.names).schema == SCORE_REQUEST_SCHEMA
    # another engine, the rows reversed: each row's numbers depend on the row alone
    reversed_rows = requests.take(list(range(requests.num_rows))[::-1])
    again = engine(prefix_sharing=False).score(reversed_rows).to_pylist()[::-1]
    assert [r["logprob_sum"] for r in again] == scored.column("logprob_sum").to_pylist()
    assert all(r["n_computed_tokens"] == r["n_input_tokens"] for r in again)
    rows = scored.to_pylist()
    assert all(r["n_computed_tokens"] <= r["n_input_tokens"] for r in rows)
    assert sum(r["n_computed_tokens"] for r in rows) < sum(r["n_input_tokens"] for r in rows)
    by_prompt = {p: sum(r["logprob_sum"] for r in rows if r["candidate_id"] == p) for p in "ab"}
    assert by_prompt["a"] != by_prompt["b"]  # different prompts, different losses


def test_a_segmentation_is_the_prompts_sentences_verbatim():
    requests = generate_requests([("", masking.segmentation_request(PROMPT, 2))], task_id="t")
    result = engine().generate(requests)
    assert result.schema == GENERATE_RESULT_SCHEMA
    segmentation = masking.segment(PROMPT, result.column("text")[0].as_py(), max_units=2)
    assert segmentation.method == "model"
    sentences = ("Think step by step.", "Answer yes or no. Quote the rule you used.")
    assert segmentation.units(PROMPT) == sentences


@pytest.mark.parametrize("style", ["short", "long"])
def test_rewrites_pass_vetting_and_differ_per_sample(style):
    requests = rewrite_table(style)
    result = engine().generate(requests)
    assert result.num_rows == 4 and result.column("sample_index").to_pylist() == [0, 1, 2, 3]
    assert engine().generate(requests).equals(result)  # same request and seed: same samples
    prompts = []
    for row in result.to_pylist():
        output = complete_prefilled(
            RESPONSE_PREFILL[style], row["text"], row["finish_reason"] == "stop"
        )
        vetted = vet_rewrite(
            output,
            current_prompt=PROMPT,
            seen=set(prompts),
            max_prompt_tokens=200,
            count_tokens=lambda text: len(text.split()),
        )
        assert vetted.reason == "", (output, vetted)
        prompts.append(vetted.text)
    other_seed = engine().generate(rewrite_table(style, seed=12)).column("text").to_pylist()
    assert other_seed != result.column("text").to_pylist()


def test_a_stop_string_ends_the_answer_before_it_as_vllm_does():
    stopped = engine().generate(rewrite_table("short", stop=["</prompt>"])).to_pylist()
    plain = engine().generate(rewrite_table("short")).to_pylist()
    for row, whole in zip(stopped, plain):
        assert whole["text"].endswith("</prompt>") and "</prompt>" not in row["text"]
        assert (row["text"], row["finish_reason"]) == (whole["text"][: -len("</prompt>")], "stop")


def test_an_answer_over_max_tokens_is_cut_there():
    message = masking.segmentation_request(PROMPT)
    requests = generate_requests([("", message)], task_id="t", max_tokens=3)
    row = engine().generate(requests).to_pylist()[0]
    assert (row["n_tokens"], row["finish_reason"]) == (3, "length")
    assert len(row["text"].split()) == 3


def test_calls_last_as_long_as_the_cost_model_says():
    simulated = engine(seconds_per_call=0.01, seconds_per_scored_token=2e-4)
    small, large = scoring_table(prompts=[("a", PROMPT)]), scoring_table()
    seconds = {}
    for name, table in (("small", small), ("large", large)):
        started = time.perf_counter()
        scored = simulated.score(table)
        seconds[name] = time.perf_counter() - started
        read = sum(scored.column("n_computed_tokens").to_pylist())
        modeled = simulated.modeled_seconds(read, 0)
        assert modeled == pytest.approx(0.01 + 2e-4 * read)
        assert modeled <= seconds[name] < modeled + 1.0
    assert seconds["large"] > seconds["small"]
    writer = engine(seconds_per_generated_token=0.01)
    started = time.perf_counter()
    generated = writer.generate(rewrite_table("short"))
    tokens = sum(generated.column("n_tokens").to_pylist())
    assert time.perf_counter() - started >= 0.01 * tokens


def test_the_engine_imports_neither_torch_nor_vllm():
    code = (
        "import sys; from tests.test_simulated_engine import engine, scoring_table; "
        "engine().score(scoring_table()); "
        "assert not {'torch', 'vllm', 'transformers'} & set(sys.modules), sys.modules.keys()"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[1])


@pytest.mark.ray
def test_a_suite_on_simulated_replicas_runs_the_same_twice(local_ray, tmp_path):
    from pmpo_ray.jobs import SuiteConfig
    from pmpo_ray.suite.run import run_suite

    pool = {"engine": {"backend": "simulated"}, "replicas": {"num_cpus": 0}}
    tasks = [
        {
            "task": {
                "name": name,
                "data": f"builtin:bbh/{name}.json",
                "format": "supervised",
                "initial_prompt": PROMPT,
                "max_train": 4,
            }
        }
        for name in ("navigate", "sports_understanding", "boolean_expressions")
    ]
    config = SuiteConfig.model_validate(
        {
            "name": "simulated",
            "tasks": tasks,
            "optimizer": {"iterations": 2, "hard_cases": 2, "rewrites_per_case": 2},
            "scorer": pool,
            "rewriter": pool,
        }
    )
    runs = [run_suite(config, out=tmp_path / f"run{i}").results for i in range(2)]
    assert [summary(result) for result in runs[0]] == [summary(result) for result in runs[1]]
    history = [record for result in runs[0] for record in result.history]
    assert all(a.method == "model" for record in history for a in record.masking_results)
    scored_rewrites = [c for record in history for c in record.candidates if c.parent_id]
    assert len(scored_rewrites) >= len(history)  # rewrites pass vetting and get scored
    # Each round's line says how its jobs were cut and what replicas spent outside engines.
    rounds = [json.loads(line) for line in (tmp_path / "run0" / "rounds.jsonl").open()]
    assert all(line["scoring_batches"] >= 1 and line["generation_batches"] >= 1 for line in rounds)
    assert all(line["scorer_prep_us_per_row"] > 0 for line in rounds)
    # (figures are what the pool did between two round ends: with two cohorts a line may
    # hold no generation job of its own)
    assert any(line.get("rewriter_generation_prep_us_per_row", 0) > 0 for line in rounds)


def summary(result) -> tuple:
    return (
        result.task_id,
        result.best.text,
        result.best.loss,
        [(record.best_loss, len(record.candidates)) for record in result.history],
    )


# ----- the mirrors of the optimizer's requests (engines do not import pmpo/) -----------------

MIRROR_PROMPTS = [
    PROMPT,
    "One.\nTwo lines!\n\nThree? Four. Five.  Six! Seven.\nEight",
    "Task: do it.\nExample: x\nPrompt: y. Correct answer: maybe.",
    "## Current prompt\nweird\n\n## An input the current prompt handles badly\nhm.",
    "Braces {current_prompt} stay. Tabs\tand  spaces .",
    "  leading and trailing  ",
    "single",
    "",
    "A. B. C. D. E. F. G. H. I. J. K.",
]


def template_pattern(template: str):
    """The meta-prompt as a regex capturing its current prompt, built from the template itself
    (what the simulated engine matched before it mirrored the meta-prompts)."""
    import re

    pieces = re.split(r"\{(\w+)\}", template)
    fields = {"current_prompt": "(?P<current>.*?)"}
    regex = "".join(
        re.escape(piece) if i % 2 == 0 else fields.get(piece, ".*?")
        for i, piece in enumerate(pieces)
    )
    return re.compile(regex + r"\Z", re.DOTALL)


@pytest.mark.parametrize("style", ["short", "long"])
def test_the_meta_prompt_mirror_finds_the_current_prompt_as_the_templates_do(style):
    from pmpo_ray.engines.simulated_answers import current_prompt
    from pmpo_ray.pmpo.rewrite import META_PROMPTS

    exact = template_pattern(META_PROMPTS[style])
    fields = [
        ("Divisibility.", EXAMPLES[0].input, "No", '- "Think step by step." helps'),
        ("Two\nlines.", "Prompt: p\nTask: t", "(A)\n", "## Task\n- none"),
    ]
    for prompt in MIRROR_PROMPTS:
        for task, user_input, answer, analysis in fields:
            message = rewrite_request(
                style,
                task_description=task,
                user_input=user_input,
                true_answer=answer,
                mask_analysis=analysis,
                current_prompt=prompt,
            )
            found = current_prompt(message)
            assert found == exact.match(message).group("current")
            if "## " not in prompt:  # (a prompt holding the template's headers is ambiguous)
                assert found == prompt
            assert current_prompt(message + " more") is None  # not the template any more
    for other in (masking.segmentation_request(PROMPT), "What is 2+2?", "Prompt: x"):
        assert current_prompt(other) is None


def test_the_sentence_mirror_makes_the_masking_splitters_units():
    import random

    from pmpo_ray.engines.simulated_answers import sentence_units

    rng = random.Random(3)
    pieces = ["Be brief.", "Why?", "No!", "\n", "\n\n", "  ", "word", "a.b", " ", "...", "\t"]
    prompts = MIRROR_PROMPTS + ["".join(rng.choices(pieces, k=12)) for _ in range(200)]
    for prompt in prompts:
        for max_units in range(1, 9):
            spans = masking.sentence_spans(prompt, max_units)
            assert sentence_units(prompt, max_units) == [prompt[s:e] for s, e in spans], prompt
    with pytest.raises(ValueError, match="at least 1"):
        sentence_units(PROMPT, 0)


@pytest.mark.parametrize("max_units", [1, 2, 5])
def test_a_segmentation_request_round_trips_through_the_mirror(max_units):
    from pmpo_ray.engines.simulated_answers import simulated_text

    for prompt in MIRROR_PROMPTS:
        row = {"input": masking.segmentation_request(prompt, max_units), "prompt": ""}
        spans = masking.sentence_spans(prompt, max_units)
        expected = " ".join(f"<mask>{prompt[s:e]}</mask>" for s, e in spans)
        assert simulated_text(row, 0) == expected


def test_engines_import_nothing_from_the_optimizer():
    """Engines sit below pmpo/: none of their modules imports it."""
    import ast

    for path in (Path(__file__).parents[1] / "pmpo_ray" / "engines").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                assert not (node.module or "").startswith("pmpo_ray.pmpo"), path.name
            if isinstance(node, ast.Import):
                assert not any(a.name.startswith("pmpo_ray.pmpo") for a in node.names), path.name
