"""`knowledge eval`: recall@k and MRR per search mode, on a corpus whose answers are known."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from inhouse.auth.authenticate import local_operator
from inhouse.cli.main import app
from inhouse.errors import InvalidRequest
from inhouse.knowledge.evaluate import Question, parse_questions
from inhouse.knowledge.search import Mode
from tests.knowledge.conftest import ACTOR, Knowledge, write

runner = CliRunner()
DOCS = {
    "hr/leave.txt": "Employees receive twenty-five days of paid holiday each year.",
    "legal/acme.md": "Either party may terminate this agreement with ninety days written notice.",
    "it/printer.txt": "Error ZX4471 means the paper tray of the printer is jammed.",
}
QUESTIONS = [
    # a paraphrase sharing no word with any document: only the vectors find it
    {"question": "how much vacation do staff get annually", "expected": "leave.txt"},
    # an opaque code: the keyword list has it first, so hybrid does too
    {"question": "ZX4471", "expected": "it/printer.txt"},
    {"question": "ending the agreement needs ninety days notice", "expected": ["acme.md"]},
]


def run(home: Path, *args: str, code: int = 0) -> str:
    result = runner.invoke(app, [*args, "--home", str(home)])
    assert result.exit_code == code, result.output
    return result.output


def lines(questions: list[dict[str, object]]) -> str:
    return "\n".join(json.dumps(q) for q in questions) + "\n"


def test_eval_reports_recall_and_mrr_per_mode_and_ranks_per_question(tmp_path: Path) -> None:
    home = tmp_path / "home"
    run(home, "groups", "add", "staff")
    run(home, "knowledge", "create", "docs", "--group", "staff")
    run(home, "knowledge", "add", "docs", str(write(tmp_path / "drive", DOCS)))
    questions = tmp_path / "questions.jsonl"
    questions.write_text(lines(QUESTIONS))

    report = json.loads(run(home, "knowledge", "eval", "docs", str(questions), "--json"))
    assert report["questions"] == 3 and report["top_k"] == 10
    hybrid, vector, keyword = (report["metrics"][m] for m in ("hybrid", "vector", "keyword"))
    assert hybrid == {"recall@1": 1.0, "recall@5": 1.0, "recall@10": 1.0, "mrr": 1.0}
    # the paraphrase holds no indexed word: keyword search never finds its document
    assert keyword["recall@1"] == keyword["recall@10"] == pytest.approx(2 / 3)
    assert keyword["mrr"] == pytest.approx(2 / 3)
    assert vector["recall@5"] == 1.0  # three one-chunk documents: all are in its top 5
    paraphrase, code, _ = report["per_question"]
    assert paraphrase["ranks"] == {"hybrid": 1, "vector": 1, "keyword": None}
    assert code["ranks"]["hybrid"] == code["ranks"]["keyword"] == 1
    assert code["expected"] == ["it/printer.txt"]

    table = run(home, "knowledge", "eval", "docs", str(questions), "--top-k", "3")
    assert "recall@1" in table and "recall@10" not in table  # no cutoff past the depth
    assert "keyword  0.667     0.667" in table


def test_eval_refuses_bad_lines_and_unknown_documents(tmp_path: Path) -> None:
    home = tmp_path / "home"
    run(home, "groups", "add", "staff")
    run(home, "knowledge", "create", "docs", "--group", "staff")
    run(home, "knowledge", "add", "docs", str(write(tmp_path / "drive", DOCS)))
    bad = tmp_path / "bad.jsonl"
    bad.write_text(lines(QUESTIONS[:1]) + '{"question": "x"}\n')
    assert "line 2: 'expected'" in run(home, "knowledge", "eval", "docs", str(bad), code=2)
    bad.write_text(lines([{"question": "leave", "expected": "leaves.txt"}]))
    assert "no document 'leaves.txt'" in run(home, "knowledge", "eval", "docs", str(bad), code=2)
    assert "no collection" in run(home, "knowledge", "eval", "nope", str(bad), code=2)
    assert "No such file" in run(home, "knowledge", "eval", "docs", str(tmp_path / "x"), code=2)


def test_recall_counts_each_expected_document_and_ids_name_documents(
    knowledge: Knowledge, tmp_path: Path
) -> None:
    knowledge.people(lambda d: d.add_group("staff"))
    knowledge.service.create(ACTOR, "docs", "staff")
    knowledge.service.add(ACTOR, "docs", write(tmp_path / "drive", DOCS))
    acme = next(d for d in knowledge.service.documents("docs") if d["source"].endswith("acme.md"))
    both = Question("ninety days", ("leave.txt", str(acme["id"])))
    evaluation = knowledge.service.evaluate(local_operator(), "docs", [both], top_k=5)
    for mode in Mode:  # the top passage is one of the two documents, the top five hold both
        assert evaluation.metrics[mode]["recall@1"] == 0.5
        assert evaluation.metrics[mode]["recall@5"] == 1.0
        assert evaluation.questions[0].ranks[mode] == 1


def test_parse_questions_refuses_what_is_not_a_question() -> None:
    assert parse_questions(['{"question": "q", "expected": 7}', ""]) == [Question("q", ("7",))]
    for line, says in (
        ("not json", "line 1: not JSON"),
        ('["q"]', "'question' must be"),
        ('{"question": " ", "expected": "a"}', "'question' must be"),
        ('{"question": "q", "expected": []}', "'expected' must be"),
        ('{"question": "q", "expected": [null]}', "'expected' must be"),
    ):
        with pytest.raises(InvalidRequest, match=says):
            parse_questions([line])
    with pytest.raises(InvalidRequest, match="no question"):
        parse_questions(["", "  "])
