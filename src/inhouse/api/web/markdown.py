"""Markdown from models and users rendered to HTML that is safe to insert into a page.

markdown-it-py renders (raw HTML off, no linkify), pygments highlights fenced code with CSS
classes only (the CSP forbids style attributes; the colours are in static/code.css), and nh3
then keeps a strict allowlist: no image, media, frame, form or script element at all (an
image becomes its alt text), no style or event attribute, and links only to http, https,
mailto or same-origin relative addresses, marked rel="noopener noreferrer nofollow". So an
answer cannot make the browser fetch anything from another origin, nor run any script."""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache
from html import escape

import nh3
from markdown_it import MarkdownIt
from markdown_it.renderer import RendererHTML
from markdown_it.token import Token
from markdown_it.utils import EnvType, OptionsDict
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import get_lexer_by_name
from pygments.token import STANDARD_TYPES
from pygments.util import ClassNotFound

CODE_CLASS = "highlight"  # the scope of the rules in static/code.css
LINK_REL = "noopener noreferrer nofollow"
MAX_HIGHLIGHTED_CHARS = 100_000  # longer code blocks are shown plain: pygments is not free

TAGS = {
    "p", "br", "hr", "h1", "h2", "h3", "h4", "h5", "h6", "strong", "em", "del", "s", "code",
    "pre", "span", "blockquote", "ul", "ol", "li", "a", "table", "thead", "tbody", "tr", "th",
    "td",
}  # fmt: skip
ATTRIBUTES = {"a": {"href", "title"}, "ol": {"start"}}
CLASSES = {
    "pre": {CODE_CLASS},
    "span": {name for name in STANDARD_TYPES.values() if name},
}
SCHEMES = {"http", "https", "mailto"}
_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


def render_markdown(text: str) -> str:
    """`text` as sanitized HTML: inert (nothing loads, nothing runs), code highlighted."""
    html = _parser().render(text)
    return nh3.clean(
        html,
        tags=TAGS,
        attributes=ATTRIBUTES,
        allowed_classes=CLASSES,
        attribute_filter=_keep_attribute,
        url_schemes=SCHEMES,
        link_rel=LINK_REL,
        strip_comments=True,
    )


def code_css() -> str:
    """The stylesheet of the highlighted code's classes (what static/code.css holds)."""
    formatter = HtmlFormatter(style="default")
    scope = f".{CODE_CLASS}"
    rules = formatter.get_background_style_defs(scope) + formatter.get_token_style_defs(scope)
    return "\n".join(rules) + "\n"


@lru_cache(maxsize=1)
def _parser() -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": False, "linkify": False, "highlight": _highlight})
    md.enable(["table", "strikethrough"])
    md.add_render_rule("image", _image_as_alt_text)
    return md


def _highlight(code: str, lang: str, _attrs: str) -> str:
    """A whole `<pre>` of classed spans (markdown-it uses it as is), or "" for plain code."""
    if not lang or len(code) > MAX_HIGHLIGHTED_CHARS:
        return ""
    try:
        lexer = get_lexer_by_name(lang.lower(), stripnl=False, ensurenl=False)
    except ClassNotFound:
        return ""
    spans = highlight(code, lexer, HtmlFormatter(nowrap=True))
    return f'<pre class="{CODE_CLASS}"><code>{spans}</code></pre>\n'


def _image_as_alt_text(
    self: RendererHTML, tokens: Sequence[Token], idx: int, options: OptionsDict, env: EnvType
) -> str:
    """An image is never loaded (it could carry data to any server): its alt text is shown."""
    token = tokens[idx]
    return escape(self.renderInlineAsText(token.children or [], options, env))


def _keep_attribute(tag: str, attribute: str, value: str) -> str | None:
    """Refuse a link that leaves the allowed schemes in a way nh3 lets through: a scheme-
    relative address (`//host`, or `/\\host`, which browsers read the same) is another origin."""
    if tag != "a" or attribute != "href":
        return value
    address = value.strip()
    if _SCHEME.match(address):
        return value if address.split(":", 1)[0].lower() in SCHEMES else None
    if address.startswith(("//", "\\", "/\\")):
        return None
    return value
