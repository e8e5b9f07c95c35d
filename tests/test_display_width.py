"""The table formatter aligns columns in terminal columns, whatever the script.

Each cell is built from glyphs whose width on a terminal is known here (wide
East Asian characters, combining and enclosing marks, emoji with modifiers and
zero-width joiners, variation selectors), and the table the formatter prints
is compared with one laid out from those known widths.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from codemode_store.cli_support import display

#: (text, the columns a terminal gives it)
GLYPHS = [
    ("a", 1),
    ("Z", 1),
    ("7", 1),
    ("日", 2),  # CJK ideograph: wide
    ("語", 2),
    ("한", 2),  # Hangul syllable: wide
    ("ｱ", 1),  # halfwidth katakana
    ("Ａ", 2),  # fullwidth Latin
    ("e\u0301", 1),  # e + combining acute accent
    ("o\u0308\u0323", 1),  # two combining marks
    ("a\u20dd", 1),  # enclosing circle (a mark of combining class 0)
    ("\u1100\u1161", 2),  # Hangul jamo: leading consonant (wide) + vowel (no width)
    ("\U0001f44d", 2),  # emoji
    ("\U0001f44d\U0001f3fd", 2),  # emoji + skin tone modifier
    ("\U0001f468\u200d\U0001f469\u200d\U0001f467", 2),  # a family: three emoji joined by ZWJ
    ("\u2764\ufe0f", 2),  # heart + emoji presentation selector
    ("x\u200by", 2),  # zero-width space between two letters
]

cells = st.lists(st.sampled_from(GLYPHS), max_size=6)


def expected_table(headers: list[str], rows: list[list[list[tuple[str, int]]]], right: set[int]) -> str:
    """Lay the table out from the known glyph widths, as the formatter should."""
    texts = [["".join(g for g, _ in cell) for cell in row] for row in rows]
    widths = [[sum(w for _, w in cell) for cell in row] for row in rows]
    columns = [max([len(h), *(row[i] for row in widths)]) for i, h in enumerate(headers)]

    def line(cells: list[str], sizes: list[int]) -> str:
        out = []
        for index, (text, size) in enumerate(zip(cells, sizes, strict=True)):
            gap = " " * (columns[index] - size)
            out.append(gap + text if index in right else text + gap)
        return "  ".join(out).rstrip()

    lines = [line(headers, [len(h) for h in headers]), line(["-" * w for w in columns], columns)]
    lines += [line(t, w) for t, w in zip(texts, widths, strict=True)]
    return "\n".join(lines)


@given(
    rows=st.lists(st.lists(cells, min_size=3, max_size=3), min_size=1, max_size=5),
    right=st.sets(st.sampled_from([0, 1, 2])),
)
def test_columns_align_on_wide_and_combining_text(
    rows: list[list[list[tuple[str, int]]]], right: set[int]
) -> None:
    headers = ["one", "two", "three"]
    texts = [["".join(g for g, _ in cell) for cell in row] for row in rows]
    assert display.format_table(headers, texts, right=right) == expected_table(headers, rows, right)


def test_a_wide_session_id_lines_up_with_its_neighbours() -> None:
    table = display.format_table(
        ["session", "n"], [["日本語", "1"], ["abc", "22"], ["e\u0301te\u0301", "3"]], right={1}
    )
    assert table.splitlines() == [
        "session   n",
        "-------  --",
        "日本語    1",
        "abc      22",
        "e\u0301te\u0301       3",
    ]
