import pytest

from inhouse.engine.template_limits import RenderLimits, TemplateLimitExceeded
from inhouse.engine.templates import CHATML, ChatTemplate, UnsafeTemplate
from inhouse.errors import InvalidRequest
from tests.gguf_files import BOMB_ON_TRIGGER

MESSAGES = [{"role": "user", "content": "Hi"}]


def test_chatml_renders_with_generation_prompt() -> None:
    text = ChatTemplate(CHATML).render(MESSAGES)
    assert text == "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"


@pytest.mark.parametrize(
    "source",
    [
        "{{ cycler.__init__.__globals__.os.system('touch /tmp/pwned') }}",
        "{{ messages.__class__.__mro__ }}",
        "{{ messages['__class__'] }}",
        "{% set x = joiner._Joiner__sep %}{{ x }}",
    ],
)
def test_a_template_reaching_for_python_internals_is_refused_before_rendering(
    source: str,
) -> None:
    with pytest.raises(UnsafeTemplate):
        ChatTemplate(source)


def test_the_sandbox_still_blocks_what_the_static_check_cannot_see() -> None:
    template = ChatTemplate("{{ messages[0]['content'] | attr(messages[0]['role']) }}")
    with pytest.raises(UnsafeTemplate):
        template.render([{"role": "__class__", "content": "x"}])


def test_raise_exception_in_a_template_is_a_client_error() -> None:
    template = ChatTemplate("{{ raise_exception('only user messages') }}")
    with pytest.raises(InvalidRequest, match="only user messages"):
        template.render(MESSAGES)


def test_bos_is_stripped_only_when_the_tokenizer_adds_it() -> None:
    source = "{{ bos_token }}" + CHATML
    kept = ChatTemplate(source, bos_token="<s>", adds_bos=False).render(MESSAGES)
    stripped = ChatTemplate(source, bos_token="<s>", adds_bos=True).render(MESSAGES)
    assert kept.startswith("<s><|im_start|>")
    assert stripped.startswith("<|im_start|>")


# ----- render limits (issue 13): a template may not loop, grow or run without bound -----------

NESTED_RANGE = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"
HOSTILE = {
    "nested range": NESTED_RANGE,
    "string times 30M": "{{ 'ab ' * 30000000 }}",
    "doubling concatenation": (
        "{% set ns = namespace(s='ab') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}"
        "{% endfor %}{{ ns.s }}"
    ),
    "center filter": "{{ 'a' | center(1000000000) }}",
    "ljust method": "{{ 'a'.ljust(1000000000) }}",
    "format width": "{{ '{:1000000000}'.format(1) }}",
    "percent width": "{{ '%1000000000d' % 1 }}",
    "replace amplifies": "{{ ('a' * 1000) | replace('a', 'b' * 1000000) }}",
    "join of a huge separator": "{{ range(100000) | join('x' * 1000000) }}",
    "huge integer": "{{ 10 ** 10000000 }}",
    "list of big integers": "{{ [2 ** 14000] * 4000000 }}",
    "list of a big namespace": "{% set ns = namespace(s='x' * 4000000) %}{{ [ns] * 100 }}",
    "exponential macro": (
        "{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(60) }}"
    ),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_a_template_that_loops_or_grows_without_bound_fails_with_a_clear_error(
    case: str,
) -> None:
    template = ChatTemplate(HOSTILE[case], limits=RenderLimits(seconds=2.0))
    with pytest.raises(TemplateLimitExceeded, match="chat template") as caught:
        template.render(MESSAGES)
    assert caught.value.status == 400


def test_limits_grow_with_the_conversation_so_a_long_prompt_is_never_refused() -> None:
    long = [{"role": "user", "content": "word " * 2_000_000}] * 3  # 30 M characters
    text = ChatTemplate(CHATML).render(long)
    assert len(text) > 30_000_000


def test_a_template_that_blows_up_only_on_some_messages_fails_only_those() -> None:
    template = ChatTemplate(BOMB_ON_TRIGGER)
    assert template.render(MESSAGES).endswith("<|im_start|>assistant\n")
    with pytest.raises(TemplateLimitExceeded):
        template.render([{"role": "user", "content": "boom"}])


def test_an_error_raised_inside_the_template_is_a_client_error() -> None:
    with pytest.raises(InvalidRequest, match="ZeroDivisionError"):
        ChatTemplate("{{ 1 / 0 }}").render(MESSAGES)


def test_string_methods_and_filters_still_work_under_the_limits() -> None:
    source = (
        "{% for m in messages %}{{ m['content'] | trim | upper }}|{{ m.content.center(9, '*') }}"
        "|{{ '%05d' % loop.index }}|{{ '{:>4}'.format(m.role) }}|{{ [1, 2] | join(',') }}"
        "{% endfor %}"
    )
    assert ChatTemplate(source).render([{"role": "user", "content": " hi "}]) == (
        "HI|*** hi **|00001|user|1,2"
    )
