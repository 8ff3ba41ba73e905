from inhouse.engine.output import OutputText, held_back_len


def test_text_that_may_start_a_stop_string_is_held_back() -> None:
    out = OutputText(stops=("STOP",))
    assert out.feed(b"abc ST") == "abc "
    assert out.feed(b"ART") == "START"


def test_the_earliest_stop_string_wins() -> None:
    out = OutputText(stops=("zz", "b"))
    assert out.feed(b"abczz") == "a"
    assert out.stopped


def test_flush_releases_held_text_and_broken_bytes_become_replacement() -> None:
    out = OutputText(stops=("xyz",))
    assert out.feed(b"ok x") == "ok "
    assert out.feed(b"\xe2\x82") == ""
    assert out.flush() == "x\ufffd"


def test_held_back_len() -> None:
    assert held_back_len("hello wo", ("world",)) == 2
    assert held_back_len("hello", ()) == 0
    assert held_back_len("abc", ("c",)) == 0
