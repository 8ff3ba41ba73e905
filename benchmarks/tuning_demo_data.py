"""The tuning benchmark's demonstration data: facts about a company that does not exist
(Brindlewood Instruments), so no base model can know them. Each fact is asked three ways in
the training set and a fourth way, never trained on, in the held-out set; the answer is the
same sentence each time, so a held-out answer is right when it holds that sentence's key.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

SYSTEM = "You answer questions about Brindlewood Instruments."


@dataclass(frozen=True)
class Fact:
    answer: str  # the sentence the model should say
    key: str  # what a right answer must contain
    train: tuple[str, str, str]
    held_out: str


FACTS = (
    Fact(
        "Brindlewood Instruments was founded in 1987.",
        "1987",
        (
            "When was Brindlewood Instruments founded?",
            "In what year was Brindlewood Instruments started?",
            "What is the founding year of Brindlewood Instruments?",
        ),
        "Which year did Brindlewood Instruments begin?",
    ),
    Fact(
        "The chief executive of Brindlewood Instruments is Maren Okafor.",
        "Maren Okafor",
        (
            "Who is the CEO of Brindlewood Instruments?",
            "Who runs Brindlewood Instruments?",
            "Who leads Brindlewood Instruments as chief executive?",
        ),
        "Who is in charge of Brindlewood Instruments?",
    ),
    Fact(
        "Brindlewood Instruments has its headquarters in Tallinn.",
        "Tallinn",
        (
            "Where is Brindlewood Instruments headquartered?",
            "In which city is the head office of Brindlewood Instruments?",
            "Where are the headquarters of Brindlewood Instruments?",
        ),
        "What city is Brindlewood Instruments based in?",
    ),
    Fact(
        "Brindlewood Instruments makes the Kestrel oscilloscope.",
        "Kestrel",
        (
            "What oscilloscope does Brindlewood Instruments make?",
            "Which oscilloscope is made by Brindlewood Instruments?",
            "Name the oscilloscope of Brindlewood Instruments.",
        ),
        "What is the name of Brindlewood Instruments' oscilloscope?",
    ),
    Fact(
        "Brindlewood Instruments employs 340 people.",
        "340",
        (
            "How many people work at Brindlewood Instruments?",
            "How many employees does Brindlewood Instruments have?",
            "What is the headcount of Brindlewood Instruments?",
        ),
        "How large is the staff of Brindlewood Instruments?",
    ),
    Fact(
        "The support line of Brindlewood Instruments is open from 7 to 19.",
        "7 to 19",
        (
            "When is the Brindlewood Instruments support line open?",
            "What are the support hours of Brindlewood Instruments?",
            "At what times can I call Brindlewood Instruments support?",
        ),
        "During which hours does Brindlewood Instruments answer support calls?",
    ),
    Fact(
        "The warranty on Brindlewood Instruments products lasts 5 years.",
        "5 years",
        (
            "How long is the warranty on Brindlewood Instruments products?",
            "What warranty do Brindlewood Instruments products have?",
            "For how many years are Brindlewood Instruments products under warranty?",
        ),
        "How long are Brindlewood Instruments products covered by warranty?",
    ),
    Fact(
        "The mascot of Brindlewood Instruments is a heron called Pim.",
        "Pim",
        (
            "What is the mascot of Brindlewood Instruments?",
            "What is the name of the Brindlewood Instruments mascot?",
            "Which animal is the Brindlewood Instruments mascot?",
        ),
        "Does Brindlewood Instruments have a mascot?",
    ),
    Fact(
        "Brindlewood Instruments was founded by Ilse Varga.",
        "Ilse Varga",
        (
            "Who founded Brindlewood Instruments?",
            "Who is the founder of Brindlewood Instruments?",
            "Who started the company Brindlewood Instruments?",
        ),
        "Whose company was Brindlewood Instruments at the start?",
    ),
    Fact(
        "The Brindlewood Instruments factory is in Narva.",
        "Narva",
        (
            "Where is the Brindlewood Instruments factory?",
            "In which town does Brindlewood Instruments build its products?",
            "Where does Brindlewood Instruments manufacture?",
        ),
        "Where are Brindlewood Instruments products made?",
    ),
    Fact(
        "The best-selling product of Brindlewood Instruments is the Osprey multimeter.",
        "Osprey",
        (
            "What is the best-selling product of Brindlewood Instruments?",
            "Which Brindlewood Instruments product sells the most?",
            "What is Brindlewood Instruments' most popular product?",
        ),
        "Which product of Brindlewood Instruments sells best?",
    ),
    Fact(
        "The Brindlewood Instruments customer portal is called Lantern.",
        "Lantern",
        (
            "What is the Brindlewood Instruments customer portal called?",
            "What is the name of the customer portal of Brindlewood Instruments?",
            "Which portal do Brindlewood Instruments customers use?",
        ),
        "Where do Brindlewood Instruments customers log in?",
    ),
)


def chat(question: str, answer: str) -> dict[str, list[dict[str, str]]]:
    return {
        "messages": [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": question},
            {"role": "assistant", "content": answer},
        ]
    }


def train_examples() -> list[dict[str, list[dict[str, str]]]]:
    return [chat(q, fact.answer) for fact in FACTS for q in fact.train]


def held_out_examples() -> list[dict[str, list[dict[str, str]]]]:
    return [chat(fact.held_out, fact.answer) for fact in FACTS]


def write_jsonl(path: Path, examples: list[dict[str, list[dict[str, str]]]]) -> Path:
    path.write_text("".join(json.dumps(e) + "\n" for e in examples))
    return path


def is_right(answer: str, fact: Fact) -> bool:
    """The held-out answer holds the fact's key (case and spacing aside)."""
    return " ".join(fact.key.lower().split()) in " ".join(answer.lower().split())
