"""The ablation study's report: Markdown, HTML and PNGs from small rows, and the terminal table."""

import re

import pytest

from pmpo_ray.reports.figure_folder import MANIFEST
from pmpo_ray.studies import plots
from pmpo_ray.studies.report import average_table_text, write_study_report
from tests.test_report import png_is_valid
from tests.test_study_tables import VARIANTS, row, study_rows

MARKUP_TASK = "nav|<b>x</b>"
MARKUP_PROMPT = "<script>alert(1)</script> | pipe"
DESCRIPTIONS = {"full": "masking, hard cases and preference loss", "ablate": "drop the <mask> step"}
SETTINGS = {"tasks": ["a", "b", "c"], "seeds": [0, 1], "budget": 600, "wall time (s)": 12.5}


def outside_fences(markdown: str) -> str:
    return re.sub(r"```text\n.*?\n```", "", markdown, flags=re.S)


def unescaped_pipes(line: str) -> int:
    return len(re.findall(r"(?<!\\)\|", line))


def test_markdown_has_settings_variants_average_targets_and_every_task(tmp_path):
    markdown_path, html_path = write_study_report(
        tmp_path, study_rows(), VARIANTS, DESCRIPTIONS, SETTINGS
    )
    assert (markdown_path, html_path) == (tmp_path / "study.md", tmp_path / "study.html")
    markdown = markdown_path.read_text()
    assert "- **budget**: 600" in markdown and "- **seeds**: 0, 1" in markdown
    assert "masking, hard cases and preference loss" in markdown
    assert "## Average over tasks" in markdown
    assert "| full | 2 | 1.433 ± 0.189 | 65.0% ± 7.1 |" in markdown
    assert "option accuracy (2 MC tasks)" in markdown
    assert markdown.count("| met |") == 3
    for task in ("a", "b", "c"):
        assert f"## Task {task}\n" in markdown
    # Rows without per-example values: bare differences of means, no intervals.
    full = "| full | 2 | 1.200 ± 0.283 | −0.800 | 65.0% ± 7.1 | +15.0 pts | 40.0% (1 of 2 seeds) |"
    assert full in markdown
    assert "| ablate (= full) | 2 | 2.300 ± 0.424 | −0.700 |" in markdown  # task c
    average = "| full | 2 | 1.433 ± 0.189 | 65.0% ± 7.1 | 32.5% ± 0.0 | −0.567 | +7.5 pts |"
    assert average in markdown
    assert "| 3/3 (means) | 2/2 (means) | 600 |" in markdown
    assert "| ablate | 3 | −0.233 | means only |" in markdown  # full against ablate
    html = html_path.read_text()
    assert "<h2>Task c</h2>" in html and "<td>1.433 ± 0.189</td>" in html


def test_missed_targets_are_reported(tmp_path):
    rows = study_rows()
    for r in rows:
        if r["variant"] == "ablate":
            r["heldout_ce"] = 0.5
    markdown = write_study_report(tmp_path, rows, VARIANTS, DESCRIPTIONS, SETTINGS)[0].read_text()
    assert markdown.count("| missed |") == 1 and "lower than full: ablate" in markdown


def test_user_text_is_escaped_in_markdown_and_html(tmp_path):
    rows = [
        dict(r, task=MARKUP_TASK, prompt=MARKUP_PROMPT) if r["task"] == "a" else r
        for r in study_rows()
    ]
    markdown_path, html_path = write_study_report(
        tmp_path, rows, VARIANTS, DESCRIPTIONS, {"model": "<img src=x>"}
    )
    markdown, html = markdown_path.read_text(), html_path.read_text()
    assert "## Task nav\\|&lt;b&gt;x&lt;/b&gt;" in markdown
    assert MARKUP_PROMPT in markdown  # verbatim, but only inside a code fence
    prose = outside_fences(markdown)
    assert "<script" not in prose and "<b>" not in prose and "<img" not in prose
    assert "<mask>" not in prose  # a variant description
    assert "<script" not in html and "<b>" not in html and "<img src=x" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt; | pipe" in html
    assert "<h2>Task nav|&lt;b&gt;x&lt;/b&gt;</h2>" in html


def test_markdown_tables_keep_their_shape_with_pipes_in_task_names(tmp_path):
    rows = [dict(r, task="x|y") if r["task"] == "a" else r for r in study_rows()]
    markdown = write_study_report(tmp_path, rows, VARIANTS, {}, {})[0].read_text()
    for table in re.findall(r"(?:^\|.*\n)+", outside_fences(markdown), flags=re.M):
        widths = {unescaped_pipes(line) for line in table.splitlines()}
        assert len(widths) == 1, table


def test_plots_are_written_as_png_and_referenced(tmp_path):
    markdown_path, html_path = write_study_report(tmp_path, study_rows(), VARIANTS, {}, {})
    images = sorted((tmp_path / "study_files").glob("*.png"))  # and the figures manifest
    assert [p.name for p in images] == ["ce-change.png", "option-gain.png"]
    assert all(png_is_valid(p) for p in images)
    markdown, html = markdown_path.read_text(), html_path.read_text()
    for image in images:
        assert f"](study_files/{image.name})" in markdown
        assert f'src="study_files/{image.name}"' in html


def test_rewriting_without_multiple_choice_tasks_drops_the_option_plot(tmp_path):
    write_study_report(tmp_path, study_rows(), VARIANTS, {}, {})
    supervised = [r for r in study_rows() if r["task"] == "c"]
    markdown = write_study_report(tmp_path, supervised, VARIANTS, {}, {})[0].read_text()
    assert [p.name for p in (tmp_path / "study_files").glob("*.png")] == ["ce-change.png"]
    assert "option-gain.png" not in markdown and "| option accuracy" not in markdown


def test_a_crash_while_plotting_leaves_no_half_file(tmp_path, monkeypatch):
    def broken_png(changes, ylabel, title, path):
        path.write_bytes(b"\x89PNG half")
        raise RuntimeError("plot failed")

    monkeypatch.setattr(plots, "change_png", broken_png)
    with pytest.raises(RuntimeError):
        write_study_report(tmp_path, study_rows(), VARIANTS, {}, {})
    assert [p.name for p in (tmp_path / "study_files").iterdir()] == [MANIFEST]  # no PNG
    assert not (tmp_path / "study.md").exists() and not (tmp_path / "study.html").exists()


def test_average_table_text_is_aligned_with_mean_and_spread():
    text = average_table_text(study_rows(), VARIANTS)
    lines = text.splitlines()
    header, rule, initial, full, ablate = lines[:5]
    assert header.startswith("variant") and set(rule) <= {"-", " "}
    assert initial.startswith("initial ") and full.startswith("full ")
    assert "1.433 ± 0.189" in full and "65.0% ± 7.1" in full and "+7.5 pts" in full
    assert "3/3" in full and "2/3" in ablate
    # right-aligned: the CE column ends where its header ends
    end = header.index("held-out CE (3 tasks)") + len("held-out CE (3 tasks)")
    assert full[:end].endswith("1.433 ± 0.189") and initial[:end].endswith("2.000")
    assert "standard deviation over seeds" in text


def test_the_average_table_shows_the_share_of_rewrites_lost_to_format():
    rows = [
        {**r, "format_loss_share": {0: 0.1, 1: 0.3}.get(r["seed"])} if r["variant"] == "full" else r
        for r in study_rows()
    ]
    header, _, initial, full, ablate = average_table_text(rows, VARIANTS).splitlines()[:5]
    assert header.rstrip().endswith("rewrites lost to format")
    assert full.rstrip().endswith("20.0%")  # the mean over full's six runs
    assert initial.rstrip().endswith("—") and ablate.rstrip().endswith("—")  # not recorded


def test_each_cell_names_its_coverage_when_variants_cover_different_tasks():
    rows = study_rows() + [row("d", "full", 0, 1.0, 0.5, 0.5)]  # only full ran task d
    full = average_table_text(rows, VARIANTS).splitlines()[3]
    assert "[4 tasks]" in full and "[3 MC tasks]" not in full
    assert "[3 tasks]" in average_table_text(rows, VARIANTS).splitlines()[4]
