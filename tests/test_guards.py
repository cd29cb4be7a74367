"""Guards against degenerate rewrites, on real rewrites of the default model (SmolLM2-135M)."""

from __future__ import annotations

from functools import cache

import pytest

from pmpo_ray.pmpo.config import OptimizerConfig
from pmpo_ray.pmpo.guards import (
    RewriteGuards,
    guard_rejection,
    leak_of,
    mostly_options,
    option_share,
    shared_positions,
    shared_wording,
    words,
)
from pmpo_ray.pmpo.proposals import shown_examples
from pmpo_ray.pmpo.records import MaskingResult
from pmpo_ray.pmpo.rewrite import REJECTION_REASONS, Vetted, vet_rewrite
from pmpo_ray.pmpo.rewrite_step import RewriteStep
from pmpo_ray.pmpo.run_state import INITIAL_ID, Phase, RunState
from pmpo_ray.pmpo.select import Candidate
from pmpo_ray.tasks.example import Example
from pmpo_ray.tasks.example_files import load_examples
from pmpo_ray.tasks.task import Task

FORMATS = {
    "navigate": "multiple_choice",
    "logical_deduction_three_objects": "multiple_choice",
    "sports_understanding": "supervised",
    "object_counting": "supervised",
}


@cache
def samples(task: str) -> tuple[Example, ...]:
    """The built-in BBH sample of `task`, which `make demo`'s tasks read."""
    return tuple(load_examples(f"builtin:bbh/{task}.json", FORMATS[task]))


def sample(task: str, example_id: str) -> Example:
    """A training example of `make demo`."""
    return next(example for example in samples(task) if example.example_id == example_id)


@cache
def task_wording(task: str) -> frozenset[tuple[str, ...]]:
    """The shared wording of `task`'s sample inputs, taken as its training inputs."""
    return shared_wording([e.input for e in samples(task)], RewriteGuards().shared_wording_share)


# Rewrites from `make demo` (out/demo/tasks/<task>/iterations.json: "candidates" with
# "hard_case_of", or the raw "rejected" outputs), with the example each was written from.
# (task, iteration, example id, prompt, what leaks; None = passes both guards)
DEMO_REWRITES = [
    # navigate 1, t1-c1: the task's question pasted in
    (
        "navigate",
        1,
        "59",
        (
            "Let's think step by step.\n1. To determine if it makes you return to the starting "
            "point, take 8 steps\n2. If you follow these instructions, do you return to the "
            "starting point? Take 1 step.\n3. If you are unsure, keep going. Take 8 steps.\n\n"
            "Please select the correct answer from the options provided."
        ),
        "copies 13 words of the input",
    ),
    # navigate 1, t1-c2: fixes an answer (a wrong one: the reference is No)
    (
        "navigate",
        1,
        "30",
        (
            "Let's think step by step.\n1. Always face forward.\n2. Take 5 steps forward.\n"
            "3. Take 7 steps backward.\n4. Take 10 steps backward.\n\nOutput:\nYes"
        ),
        "states the answer 'Yes'",
    ),
    # sports_understanding 1, t1-c0: won round 1
    (
        "sports_understanding",
        1,
        "37",
        (
            "Implementing Simplified Formula\n\nRewritten version of this sentence with simplier "
            "formulas:\n\nModel: List all possible values\n* Add 0.198 to ensure correct context "
            "of the input\nOutput: 0.198\nThe answer is 0.198.\n\nIs the following statement "
            "correct?\nYes\nThe answer is Yes.\n\nThe answer is yes."
        ),
        "states the answer 'yes'",
    ),
    # object_counting 3, t3-c0 (the reference is 6)
    (
        "object_counting",
        3,
        "13",
        "The correct answer to this problem is 2, not 20.",
        "states the answer '2'",
    ),
    # object_counting 3, t3-c1: won round 3 (the reference is 7)
    (
        "object_counting",
        3,
        "56",
        (
            "1. Answer a hypothetical puzzle for which there are no standard prompts\n2. Answer a "
            "question that requires using basic arithmetic or math\n3. Make a response that is "
            "not allowed (cannot change the answer of user to choose from)\n4. Solve a problem "
            "without a single extra context or special equipment\n5. Write a story with no use "
            'of standard answers\nThe answer is "13"'
        ),
        "states the answer '13'",
    ),
    # object_counting 2, a rejected output (cut off, no closing tag)
    (
        "object_counting",
        2,
        "13",
        (
            "Implement this:\nDo you want to count the number of objects of a set of objects? "
            "Each object has a set of attributes that can be combined to calculate the number of "
            "objects.\nTask:\nInclude the explanation of your choice. I have a piano, a flute, "
            "and four trombones, how many musical instruments do I have?\nCorrect answer: 6\n\n"
            "In your prompt is to count the number of objects of a set of objects,"
        ),
        "copies 16 words of the input",
    ),
    # navigate 2, t2-c1: won round 2; lists both options, so it states neither
    (
        "navigate",
        2,
        "59",
        (
            "Let's think step by step.\n\nMake sure to follow instructions.\n\nIn this task, you "
            "will need to determine if a given action will result in a jump to the starting "
            "point.\n\nAvailable options:\n- Yes\n- No"
        ),
        None,
    ),
    # object_counting 1, t1-c0: won round 1
    (
        "object_counting",
        1,
        "13",
        (
            "Implement this:\nYour task is to create a model that predicts the number of objects "
            "in a list of objects. Each object has a set of attributes that can be combined to "
            "calculate the number of objects."
        ),
        None,
    ),
    # object_counting 2, t2-c0: won round 2; "how many musical instruments" is 4 words
    (
        "object_counting",
        2,
        "13",
        (
            "How many musical instruments does a piano have?\n\nSolution:\nHow many musical "
            "instruments does a piano have?\n\nOther prompts with this problem might be similar. "
            "Your response would need to refine it to align with the prompt's focus and do not "
            "rely on any non-standard prompts."
        ),
        None,
    ),
    # logical_deduction_three_objects 1, t1-c0: won round 1 (the reference is (C))
    (
        "logical_deduction_three_objects",
        1,
        "48",
        (
            "Deduce the order of three objects from clues. Provide the correct order.\n(Using [B) "
            "and [C] as requested.)"
        ),
        None,
    ),
    # sports_understanding 1, t1-c1
    (
        "sports_understanding",
        1,
        "51",
        (
            "Let's think step by step.\nThis sentence adds context to the other prompt, as it "
            "highlights the importance of context and highlights an important action that fits "
            "the prompt set.\nChecks for grammar and punctuation\nThis request has only a single "
            "topic, and the sentence tries to combine the criteria for questions and scenarios."
        ),
        None,
    ),
    # navigate 3, a rejected output: "no" in a sentence does not state the reference No
    (
        "navigate",
        3,
        "56",
        (
            "Let's think step by step.\n\nTo decide if following the movement instructions "
            "returns you to the starting point, you must consider your entire 10x10 square.\n\n"
            "There is no answer in the solution to the problem.\n\nIs there a possibility to "
            "make this task easier for less people who like to think on their own?\n\nTo make "
            "the task easier for people who prefer to think on their own, you can simplify the "
            "instructions further"
        ),
        None,
    ),
]

# From a 22-task BBH run of the same model (iteration 1, data: the full BBH task files),
# with the examples' inputs verbatim.
SALIENT = Example(
    "170",
    "The following translations from German to English contain a particular error. That "
    "error will be one of the following types: Named Entities: An entity (names, places, "
    "locations, etc.) is changed to a different entity. Numerical Values: Numerical values "
    "(ordinals or cardinals), dates, and/or units are changed. Modifiers or Adjectives: The "
    "modifiers and adjectives pertaining to a noun are changed. Negation or Antonyms: "
    "Introduce or remove a negation or change comparatives to their antonyms. Facts: "
    "Trivial factual errors not pertaining to the above classes are introduced in the "
    "translations. Dropped Content: A significant clause in the translation is removed. "
    "Please identify that error.  Source: In der Liste der Kulturdenkmäler in "
    "Frankfurt-Oberrad sind alle Kulturdenkmäler im Sinne des Hessischen "
    "Denkmalschutzgesetzes in Frankfurt-Oberrad, einem Stadtteil von Frankfurt am Main "
    "aufgelistet.\nTranslation: The list of cultural monuments in Frankfurt-Oberrad lists all "
    "cultural monuments within the meaning of the Monument Protection Act in "
    "Frankfurt-Oberrad, a district of Frankfurt am Main.\nThe translation contains an error "
    "pertaining to\nOptions:\n(A) Modifiers or Adjectives\n(B) Numerical Values\n(C) Negation "
    "or Antonyms\n(D) Named Entities\n(E) Dropped Content\n(F) Facts",
    "(A)",
    ("(B)", "(C)", "(D)", "(E)", "(F)"),
)
# salient_translation_error_detection t1-c1: won its round with a fixed (wrong) answer
SALIENT_WINNER = "Let's think step by step.\nThe correct answer is\n(D) Facts"
GOLF = Example(
    "250",
    "The following paragraphs each describe a set of three objects arranged in a fixed order. "
    "The statements are logically consistent within each paragraph. In a golf tournament, "
    "there were three golfers: Ana, Rob, and Joe. Joe finished above Ana. Rob finished above "
    "Joe.\nOptions:\n(A) Ana finished second\n(B) Rob finished second\n(C) Joe finished second",
    "(C)",
    ("(A)", "(B)"),
)
# logical_deduction_three_objects t1-c0: the task in a sentence over this example's options
GOLF_OPTIONS = (
    "Deduce the order of three objects from a set of clues.\n\nOptions:\n1. Ana finished "
    "second\n2. Rob finished second\n3. Joe finished second"
)
NAVIGATE_44 = Example(
    "44",
    "If you follow these instructions, do you return to the starting point? Take 6 steps. "
    "Take 8 steps. Take 7 steps. Turn around. Take 6 steps.\nOptions:\n- Yes\n- No",
    "No",
    ("Yes",),
)
# navigate t1-c0: the start prompt and the options
STEP_AND_OPTIONS = "Let's think step by step.\n1. Yes\n2. No"

DEFAULTS = RewriteGuards()


def vet(prompt: str, example: Example | None, guards: RewriteGuards | None = None) -> Vetted:
    return vet_rewrite(
        f"<prompt>{prompt}</prompt>",
        current_prompt="Let's think step by step.",
        seen=set(),
        max_prompt_tokens=500,
        count_tokens=lambda text: len(text.split()),
        examples=[example] if example else (),
        guards=guards,
    )


# ----- real rewrites ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "task, iteration, example_id, prompt, leak",
    DEMO_REWRITES,
    ids=[f"{row[0]}-{row[1]}-{row[2]}-{'leak' if row[4] else 'clean'}" for row in DEMO_REWRITES],
)
def test_demo_rewrites_leak_exactly_where_expected(task, iteration, example_id, prompt, leak):
    example = sample(task, example_id)
    assert leak_of(prompt, example, DEFAULTS.min_copied_words) == leak
    assert guard_rejection(prompt, [example], DEFAULTS) == ("leaks_example" if leak else "")


def test_a_winning_prompt_that_fixes_a_wrong_option_leaks():
    assert leak_of(SALIENT_WINNER, SALIENT, 8) == "states the answer '(D)'"
    assert guard_rejection(SALIENT_WINNER, [SALIENT], DEFAULTS) == "leaks_example"


def test_a_prompt_over_the_examples_options_is_mostly_options():
    assert leak_of(GOLF_OPTIONS, GOLF, 8) is None  # no run of 8 words: the numbers cut it
    assert option_share(GOLF_OPTIONS, ("(C)", "(A)", "(B)")) == 0  # labels alone: none here
    assert guard_rejection(GOLF_OPTIONS, [GOLF], DEFAULTS) == "lists_options"
    loose = RewriteGuards(max_option_share=0.5)
    assert guard_rejection(GOLF_OPTIONS, [GOLF], loose) == ""


def test_max_option_share_is_the_threshold():
    # 2 option words of 7 ("1." and "2." are list numbers, not words)
    assert option_share(STEP_AND_OPTIONS, ("No", "Yes")) == pytest.approx(2 / 7)
    assert guard_rejection(STEP_AND_OPTIONS, [NAVIGATE_44], DEFAULTS) == ""
    assert mostly_options(STEP_AND_OPTIONS, ("No", "Yes"), 0.28)
    assert not mostly_options(STEP_AND_OPTIONS, ("No", "Yes"), 2 / 7)
    strict = RewriteGuards(max_option_share=0.25)
    assert guard_rejection(STEP_AND_OPTIONS, [NAVIGATE_44], strict) == "lists_options"


def test_min_copied_words_is_the_threshold():
    prompt, example = DEMO_REWRITES[0][3], sample("navigate", "59")  # copies 13 words
    assert leak_of(prompt, example, 13) == "copies 13 words of the input"
    assert leak_of(prompt, example, 14) is None
    assert guard_rejection(prompt, [example], RewriteGuards(min_copied_words=14)) == ""
    piano = DEMO_REWRITES[8][3]  # "how many musical instruments" of example 13's input
    assert leak_of(piano, sample("object_counting", "13"), 4) == "copies 4 words of the input"
    assert leak_of(piano, sample("object_counting", "13"), 5) is None


# ----- the task's shared wording ------------------------------------------------------------

NAVIGATE_QUESTION = "If you follow these instructions, do you return to the starting point?"


def test_shared_wording_is_navigates_question_and_nothing_else():
    assert {" ".join(run) for run in task_wording("navigate")} == {
        " ".join(words(NAVIGATE_QUESTION)[i : i + 4]) for i in range(9)
    }
    inside = shared_positions(words(sample("navigate", "59").input), task_wording("navigate"))
    assert inside[:12] == [True] * 12 and not any(inside[12:])  # "take 8 steps ..." is its own
    assert task_wording("object_counting") == frozenset()  # no stem of 4 words in most inputs
    assert ("is", "the", "following", "sentence") in task_wording("sports_understanding")


def test_shared_wording_needs_more_than_the_share_and_three_inputs():
    stem = "one two three four"
    four = [f"{stem} {i}" for i in range(3)] + ["five six seven eight"]
    assert shared_wording(four, 0.5) == {("one", "two", "three", "four")}  # 3 of 4
    assert shared_wording(four, 0.75) == frozenset()  # not more than 3 of 4
    assert shared_wording(four, 1) == frozenset()
    assert shared_wording(four[:2], 0.5) == frozenset()  # two inputs cannot tell a stem
    assert shared_wording(four[:3], 0.5) == {("one", "two", "three", "four")}


@pytest.mark.parametrize(
    "task, iteration, example_id, prompt, leak",
    DEMO_REWRITES,
    ids=[f"{row[0]}-{row[1]}-{row[2]}" for row in DEMO_REWRITES],
)
def test_demo_rewrites_with_the_tasks_shared_wording(task, iteration, example_id, prompt, leak):
    # Only navigate 1's t1-c1 changes: its 13 copied words are the question and "take".
    if leak == "copies 13 words of the input":
        leak = None
    assert leak_of(prompt, sample(task, example_id), 8, task_wording(task)) == leak


def test_the_tasks_question_is_no_copy_but_an_examples_own_moves_are():
    example, wording = sample("navigate", "59"), task_wording("navigate")
    pasted = DEMO_REWRITES[0][3]  # the real rewrite that pastes the question
    assert guard_rejection(pasted, [example], DEFAULTS) == "leaks_example"
    assert guard_rejection(pasted, [example], DEFAULTS, wording) == ""
    asked = f"Answer the question '{NAVIGATE_QUESTION}' with Yes or No after tracking each move."
    assert leak_of(asked, example, 8) == "copies 12 words of the input"
    assert leak_of(asked, example, 8, wording) is None
    # 59's own moves, "Take 8 steps. Take 1 step. Take 8 steps. Turn right.", are 11 words
    moves = "Follow the moves: Take 8 steps. Take 1 step. Take 8 steps. Turn right. Then answer."
    assert leak_of(moves, example, 8, wording) == "copies 11 words of the input"
    # around the question, only the example's own words count: 9 of the 21
    both = f"{NAVIGATE_QUESTION} Take 8 steps. Take 1 step. Take 8 steps."
    assert leak_of(both, example, 8, wording) == "copies 9 words of the input"
    assert leak_of(both, example, 10, wording) is None
    assert vet(both, example) == Vetted(None, "leaks_example")
    # share 1: every word is the example's own, as before
    none_shared = shared_wording([e.input for e in samples("navigate")], 1)
    assert leak_of(pasted, example, 8, none_shared) == "copies 13 words of the input"


# ----- every example a request showed -------------------------------------------------------


def navigate_step(proposal: str) -> tuple[RewriteStep, RunState]:
    """A rewrite step of navigate (its sample as the training split), one request per round."""
    train = samples("navigate")
    task = Task("navigate", "multiple_choice", "Navigate.", STEP_PROMPT, train, ())
    config = OptimizerConfig(proposal=proposal, hard_cases=1, rewrites_per_case=4, seed=1)
    step = RewriteStep(task, config, lambda texts: [len(t.split()) for t in texts], lambda: 0.0)
    initial = Candidate(INITIAL_ID, STEP_PROMPT, 1.0, None, 0)
    state = RunState(
        phase=Phase.REWRITE,
        initial=initial,
        population=(initial,),
        example_losses={INITIAL_ID: {e.example_id: float(i) for i, e in enumerate(train)}},
        masking_results={
            INITIAL_ID: MaskingResult(INITIAL_ID, "sentences", "", (STEP_PROMPT,), (0.0,), "")
        },
        scored_texts=frozenset({STEP_PROMPT}),
    )
    return step, state


STEP_PROMPT = "Let's think step by step."


def own_moves(example: Example) -> str:
    """The instructions after navigate's question: this example's own content."""
    return example.input.split("starting point?")[1].split("\nOptions")[0].strip()


def test_an_ape_rewrite_that_leaks_any_demonstration_is_rejected():
    step, state = navigate_step("ape")
    plan = step.plan_generation(state)
    [(request, (_, case_id))] = plan.asked.items()
    by_id = {e.example_id: e for e in samples("navigate")}
    shown = [by_id[example_id] for example_id in plan.shown[request]]
    assert len(shown) == 3 and shown[0].example_id == case_id
    assert all(e.input in plan.rows[request]["input"] for e in shown)  # what the model saw
    leaks = [f"<prompt>Track these moves: {own_moves(e)} Then answer.</prompt>" for e in shown]
    assert all(len(words(own_moves(e))) >= 8 for e in shown)
    clean = f"<prompt>{NAVIGATE_QUESTION} Track your position after each move.</prompt>"
    rewrites = step.take_generations(state, plan, {request: [*leaks, clean]})
    assert [r.reason for r in rewrites.rejected] == ["leaks_example"] * 3
    assert [text for _, text in rewrites.prompts] == [clean[8:-9]]
    # vetted against the hard case alone, the second and third leaks would pass
    for leak in leaks[1:]:
        alone = vet_rewrite(
            leak,
            current_prompt=STEP_PROMPT,
            seen=set(),
            max_prompt_tokens=500,
            count_tokens=len,
            examples=shown[:1],
            shared=step.shared,
        )
        assert alone.reason == ""


def test_requests_show_the_hard_case_demonstrations_or_nothing():
    train = samples("navigate")
    case = train[5]
    shown = {
        proposal: shown_examples(
            OptimizerConfig(proposal=proposal), case=case, train=train, request_seed=7
        )
        for proposal in ("pmpo", "ape", "paraphrase")
    }
    assert shown["pmpo"] == (case,)
    assert shown["ape"][0] == case and len(set(shown["ape"])) == 3
    assert shown["paraphrase"] == ()
    step, state = navigate_step("paraphrase")
    plan = step.plan_generation(state)
    assert list(plan.shown.values()) == [()]
    # a paraphrase saw no example, so pasting one is not its leak
    leak = f"<prompt>{own_moves(train[0])}</prompt>"
    assert step.take_generations(state, plan, {0: [leak]}).rejected == ()


# ----- the rules on short prompts -----------------------------------------------------------

NAVIGATE = Example("n", "Take 3 steps. Take 3 steps back.\nOptions:\n- Yes\n- No", "Yes", ("No",))
LETTERS = Example(
    "l",
    "Which is first?\nOptions:\n(A) the owl\n(B) the crow\n(C) the robin",
    "(C)",
    ("(A)", "(B)"),
)
SPORTS = Example("s", 'Is the following sentence plausible? "Joao Moutinho caught the pass."', "no")
BOOLEAN = Example("b", "not ( True ) and ( True ) is", "False")
COUNTING = Example("c", "I have a piano, a flute, and four trombones. How many instruments?", "8")
SORTING = Example("w", "Sort the following words: oven apple", "apple oven")


@pytest.mark.parametrize(
    "prompt, example",
    [
        ("Let's think step by step.", NAVIGATE),
        ("Let's think step by step.", LETTERS),
        ("Answer Yes or No.", NAVIGATE),
        ("Answer yes or no.", SPORTS),
        ("Answer yes if it is plausible and no if it is not.", SPORTS),
        ("Evaluate the Boolean expression and answer True or False.", BOOLEAN),
        ("Reply True/False.", BOOLEAN),
        ("Choose (A), (B) or (C).", LETTERS),
        ("Answer with the letter of one option, such as (A).", LETTERS),
        ("There is no shortcut: check every step.", SPORTS),
        ("Count each object; answer with a number.", COUNTING),
        ("1. Read the list.\n2. Count.\n3. Check.\n4. Add.\n5. Recount.\n6. Answer.", COUNTING),
        ("Take 8 steps back before you answer.", COUNTING),
        ("Answer: yes or no.", SPORTS),  # after a cue, but among alternatives
        ("The answer is True or False.", BOOLEAN),
        ("The answer is (C) or (B).", LETTERS),  # not every option: still alternatives
        ("Read the clues, then pick the one of (A), (B), (C) that fits them all.", LETTERS),
        ("Like (2 + 3) * 4 = 20, work it out, then answer with a number.", COUNTING),
        ("Sort the words alphabetically.", SORTING),
    ],
)
def test_legitimate_prompts_pass(prompt, example):
    assert leak_of(prompt, example, 8) is None
    assert guard_rejection(prompt, [example], DEFAULTS) == ""


@pytest.mark.parametrize(
    "prompt, example, leak",
    [
        ("The answer is no.", SPORTS, "states the answer 'no'"),
        ("Think it through.\nno", SPORTS, "states the answer 'no'"),
        ("Answer: 8", COUNTING, "states the answer '8'"),
        ("The answer to this prompt would be 8.", COUNTING, "states the answer '8'"),
        ("Count them. The answer is 5.", COUNTING, "states the answer '5'"),
        ("Output: False", BOOLEAN, "states the answer 'False'"),
        ("Pick (C).", LETTERS, "states the answer '(C)'"),
        ("Options: (A) (B) (C). The answer is (C).", LETTERS, "states the answer '(C)'"),
        ("The correct answer is (A).", LETTERS, "states the answer '(A)'"),
        ("The correct answer is the robin.", LETTERS, "states the answer 'the robin'"),
        ("Correct answer: Yes", NAVIGATE, "states the answer 'Yes'"),
        ("Return the words as: apple oven", SORTING, "states the answer 'apple oven'"),
        ("Joao Moutinho caught the pass? Judge it.", SPORTS, None),  # 5 words copied
        (
            'Is "Joao Moutinho caught the pass" plausible? the following sentence plausible',
            SPORTS,
            None,
        ),
        (
            "Is the following sentence plausible: Joao Moutinho caught the pass?",
            SPORTS,
            "copies 10 words of the input",
        ),
    ],
)
def test_leaks(prompt, example, leak):
    assert leak_of(prompt, example, 8) == leak


@pytest.mark.parametrize(
    "prompt, options, expected",
    [
        ("(A) (B) (C) (D)", ("(A)",), True),  # any "(X)" label counts
        ("- Yes\n- No", ("Yes", "No"), True),
        ("Options:\n(A)\n(B)\n(C)", ("(C)", "(A)", "(B)"), True),
        ("Answer Yes or No.", ("Yes", "No"), False),  # alternatives are an instruction
        ("Think, then answer (A), (B), (C) or (D).", ("(A)",), False),
        ("Let's think step by step.", ("Yes", "No"), False),
        ("", ("Yes",), False),
    ],
)
def test_mostly_options(prompt, options, expected):
    assert mostly_options(prompt, options, 0.4) is expected


def test_a_bulleted_reference_is_a_list_item_not_a_stated_answer():
    assert leak_of("- yes\n- no", SPORTS, 8) is None
    assert guard_rejection("- yes\n- no", [SPORTS], DEFAULTS) == "lists_options"


def test_option_texts_of_labelled_options_count_as_options():
    prompt = "(A) the owl\n(B) the crow"
    assert guard_rejection(prompt, [LETTERS], RewriteGuards(leaks_example=False)) == "lists_options"
    assert option_share(prompt, ("(C)", "(A)", "(B)")) == pytest.approx(2 / 6)


# ----- the config switches ------------------------------------------------------------------


def test_each_switch_turns_its_guard_off():
    leaky, listy = "The answer is no.", "- Yes\n- No"
    assert guard_rejection(leaky, [SPORTS], DEFAULTS) == "leaks_example"
    assert guard_rejection(leaky, [SPORTS], RewriteGuards(leaks_example=False)) == ""
    assert guard_rejection(listy, [NAVIGATE], DEFAULTS) == "lists_options"
    assert guard_rejection(listy, [NAVIGATE], RewriteGuards(lists_options=False)) == ""
    # both: the leak is reported first, the list once the leak check is off
    both = "(A)\n(B)\n(C)\nThe answer is (C)."
    assert guard_rejection(both, [LETTERS], DEFAULTS) == "leaks_example"
    assert guard_rejection(both, [LETTERS], RewriteGuards(leaks_example=False)) == "lists_options"
    off = RewriteGuards(leaks_example=False, lists_options=False)
    assert guard_rejection(both, [LETTERS], off) == ""


def test_without_examples_nothing_is_checked():
    assert guard_rejection("- Yes\n- No", [], DEFAULTS) == ""


@pytest.mark.parametrize(
    "fields",
    [
        {"min_copied_words": 2},
        {"max_option_share": 0},
        {"max_option_share": 1.5},
        {"shared_wording_share": -0.1},
        {"shared_wording_share": 1.5},
        {"other": 1},
    ],
)
def test_config_bounds(fields):
    with pytest.raises(ValueError):
        RewriteGuards(**fields)


def test_config_defaults_and_every_field_described():
    assert DEFAULTS == RewriteGuards(
        leaks_example=True,
        min_copied_words=8,
        shared_wording_share=0.5,
        lists_options=True,
        max_option_share=0.4,
    )
    assert RewriteGuards(max_option_share=1).max_option_share == 1
    assert all(field.description for field in RewriteGuards.model_fields.values())


# ----- vet_rewrite --------------------------------------------------------------------------


def test_vet_rewrite_names_the_new_reasons():
    assert {"leaks_example", "lists_options"} <= set(REJECTION_REASONS)
    assert vet(SALIENT_WINNER, SALIENT) == Vetted(None, "leaks_example")
    assert vet("- Yes\n- No", NAVIGATE) == Vetted(None, "lists_options")
    assert vet("Answer Yes or No.", NAVIGATE) == Vetted("Answer Yes or No.", "")


def test_vet_rewrite_without_example_or_with_guards_off_accepts():
    assert vet(SALIENT_WINNER, None) == Vetted(SALIENT_WINNER, "")
    off = RewriteGuards(leaks_example=False)
    assert vet(SALIENT_WINNER, SALIENT, off) == Vetted(SALIENT_WINNER, "")


def test_vet_rewrite_guards_after_duplicate_and_before_counting_tokens():
    calls = []

    def counting(text: str) -> int:
        calls.append(text)
        return 1

    def run(prompt: str, seen: set[str]) -> Vetted:
        return vet_rewrite(
            f"<prompt>{prompt}</prompt>",
            current_prompt="Old.",
            seen=seen,
            max_prompt_tokens=0,
            count_tokens=counting,
            examples=[SPORTS],
        )

    assert run("The answer is no.", {"The answer is no."}).reason == "duplicate"
    assert run("The answer is no.", set()).reason == "leaks_example"
    assert calls == []
    assert run("Judge the sentence.", set()).reason == "too_long"
    assert calls == ["Judge the sentence."]
