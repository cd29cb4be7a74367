"""Each engine renders requests with its own model's chat template.

Two model folders that differ only in their chat template stand in for a scorer and a rewriter
of different families: scoring requests must be rendered the scorer's way, generation requests
the rewriter's way, in process and through replica pools on Ray.
"""

from pathlib import Path

import pytest

from pmpo_ray.config import ModelConfig, ReplicaConfig
from pmpo_ray.engines.chat import render_context
from pmpo_ray.engines.hf_engine import HfConfig
from pmpo_ray.engines.in_process import InProcessClient
from pmpo_ray.engines.registry import PoolConfig, build_engine
from pmpo_ray.requests import generate_requests, score_requests
from pmpo_ray.tasks.example import Example

pytestmark = pytest.mark.engine

# A template no SmolLM chat would produce: "[role] content" lines, "[assistant]" to answer.
OTHER_TEMPLATE = (
    "{% for message in messages %}[{{ message['role'] }}] {{ message['content'] }}\n"
    "{% endfor %}{% if add_generation_prompt %}[assistant] {% endif %}"
)
PROMPT, QUESTION = "Answer with yes or no.", "Is the sea salty?"


@pytest.fixture(scope="module")
def other_model(model_path, tmp_path_factory) -> Path:
    """The default model's folder with another chat template (weights linked, not copied)."""
    folder = tmp_path_factory.mktemp("other-template")
    for source in Path(model_path).iterdir():
        if source.name != "chat_template.jinja":
            (folder / source.name).symlink_to(source)
    (folder / "chat_template.jinja").write_text(OTHER_TEMPLATE)
    return folder


@pytest.fixture(scope="module")
def other_engine(other_model):
    return build_engine(HfConfig(model=ModelConfig(name=str(other_model))))


def requests():
    scoring = score_requests(
        [("p", PROMPT)], [Example("0", QUESTION, "Yes")], task_id="t", kind="adhoc", role="system"
    )
    generation = generate_requests([(PROMPT, QUESTION)], task_id="t", max_tokens=2)
    return scoring, generation


def prompt_tokens(tokenizer) -> int:
    text = render_context(tokenizer, PROMPT, QUESTION, "system")
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def test_the_two_templates_really_differ(hf_engine, other_engine):
    ours = render_context(hf_engine.tokenizer, PROMPT, QUESTION, "system")
    theirs = render_context(other_engine.tokenizer, PROMPT, QUESTION, "system")
    assert "<|im_start|>system" in ours and "[system] Answer with yes or no." in theirs
    assert prompt_tokens(hf_engine.tokenizer) != prompt_tokens(other_engine.tokenizer)


def test_in_process_rewriter_renders_with_its_own_template(hf_engine, other_engine):
    client = InProcessClient(hf_engine, rewriter=other_engine)
    scoring, generation = requests()
    generated = client.generate(generation)
    assert generated.column("n_prompt_tokens").to_pylist() == [
        prompt_tokens(other_engine.tokenizer)
    ]
    scored = client.score(scoring)
    answer_tokens = scored.column("n_tokens")[0].as_py()
    assert scored.column("n_input_tokens")[0].as_py() == (
        prompt_tokens(hf_engine.tokenizer) + answer_tokens
    )


@pytest.mark.ray
def test_rewriter_pool_on_ray_renders_with_its_own_template(
    local_ray, hf_engine, other_engine, other_model
):
    from pmpo_ray.engines.client import open_engines

    half = ReplicaConfig(num_replicas=1, num_cpus=0.5)
    scorer = PoolConfig(engine=HfConfig(), replicas=half)
    rewriter = PoolConfig(engine=HfConfig(model=ModelConfig(name=str(other_model))), replicas=half)
    scoring, generation = requests()
    with open_engines(scorer, rewriter, on_ray=True) as client:
        assert set(client.stats()) == {"scorer", "rewriter"}
        generated = client.generate(generation)
        scored = client.score(scoring)
        assert client.count_tokens([PROMPT]) == hf_engine.count_tokens([PROMPT])
    assert generated.column("n_prompt_tokens").to_pylist() == [
        prompt_tokens(other_engine.tokenizer)
    ]
    answer_tokens = scored.column("n_tokens")[0].as_py()
    assert scored.column("n_input_tokens")[0].as_py() == (
        prompt_tokens(hf_engine.tokenizer) + answer_tokens
    )
