from inhouse.api.generation.requests import ToolDef
from inhouse.api.generation.tools import ToolCallParser, ToolPlan

PLAN = ToolPlan(
    (ToolDef.model_validate({"type": "function", "function": {"name": "f"}}),), forced=False
)


def test_content_around_a_streamed_call_is_split_out() -> None:
    parser = ToolCallParser(PLAN)
    pieces = [
        "Let me check. <to",
        'ol_call>{"name": "f", ',
        '"arguments": {"x": 1}}</tool_call>',
        " Done.",
    ]
    content, calls = "", []
    for piece in pieces:
        text, found = parser.feed(piece)
        content, calls = content + text, calls + found
    rest, last = parser.finish()
    assert content + rest == "Let me check.  Done."
    assert [(c.name, c.arguments) for c in calls + last] == [("f", '{"x": 1}')]


def test_text_that_is_not_a_known_call_stays_content() -> None:
    parser = ToolCallParser(PLAN)
    text, calls = parser.feed('<tool_call>{"name": "unknown"}</tool_call> and <tool')
    rest, last = parser.finish()
    assert not calls and not last
    assert text + rest == '<tool_call>{"name": "unknown"}</tool_call> and <tool'


def test_forced_output_is_one_call() -> None:
    parser = ToolCallParser(ToolPlan(PLAN.tools, forced=True))
    assert parser.feed('{"name": "f", "arguments": {}}') == ("", [])
    rest, calls = parser.finish()
    assert rest == "" and [c.name for c in calls] == ["f"]
