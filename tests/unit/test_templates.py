import pytest

from inhouse.engine.templates import CHATML, ChatTemplate, UnsafeTemplate
from inhouse.errors import InvalidRequest

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
