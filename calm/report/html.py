"""Small HTML building blocks for the report: escaped text, tables, figures, cards.

Why hand-written instead of a template engine: the report needs a dozen element kinds, and a
dependency (Jinja2) for that would outweigh them. Everything passed in as text is escaped; only
`Raw` is inserted as is, and only this package builds `Raw` values.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from html import escape

from calm.report.figures import Image


@dataclass(frozen=True)
class Raw:
    """Markup that is already safe (built here)."""

    html: str

    def __str__(self) -> str:
        return self.html


def text(value: object) -> str:
    return value.html if isinstance(value, Raw) else escape(str(value))


def tag(name: str, content: object = "", **attrs: object) -> Raw:
    """<name attrs>content</name>; attribute `class_` becomes `class`; None values are dropped."""
    rendered = "".join(f' {k.rstrip("_").replace("_", "-")}="{escape(str(v), quote=True)}"'
                       for k, v in attrs.items() if v is not None)
    return Raw(f"<{name}{rendered}>{text(content)}</{name}>")


def join(parts: Iterable[object]) -> Raw:
    return Raw("".join(text(p) for p in parts))


@dataclass(frozen=True)
class Column:
    label: str
    numeric: bool = False


@dataclass
class Cell:
    """A table cell with optional rowspan/class (for grouped rows)."""

    value: object
    rowspan: int = 1
    class_: str = ""


def table(columns: Sequence[Column], rows: Sequence[Sequence[object]], *, caption: str = "",
          row_classes: Sequence[str] | None = None, row_attrs: Sequence[dict] | None = None,
          class_: str = "data") -> Raw:
    """A data table; numeric columns are right-aligned. A cell may be a `Cell`, or None when an
    earlier row's rowspan covers it. `row_attrs` adds attributes to each <tr> (`data_x` becomes
    `data-x`), for tests and scripts that read the table."""
    head = tag("thead", tag("tr", join(tag("th", c.label, class_="num" if c.numeric else None, scope="col")
                                       for c in columns)))
    body_rows = []
    for i, row in enumerate(rows):
        cells = []
        for col, value in zip(columns, row):
            if value is None:
                continue
            cell = value if isinstance(value, Cell) else Cell(value)
            classes = " ".join(c for c in (cell.class_, "num" if col.numeric else "") if c) or None
            cells.append(tag("td", cell.value, class_=classes,
                             rowspan=cell.rowspan if cell.rowspan > 1 else None))
        row_class = row_classes[i] if row_classes and row_classes[i] else None
        extra = row_attrs[i] if row_attrs else {}
        body_rows.append(tag("tr", join(cells), class_=row_class, **extra))
    parts = [tag("caption", caption)] if caption else []
    return tag("div", tag("table", join([*parts, head, tag("tbody", join(body_rows))]), class_=class_),
               class_="table-scroll")


def key_values(pairs: Sequence[tuple[str, object]], caption: str = "") -> Raw:
    rows = join(tag("tr", join([tag("th", k, scope="row"), tag("td", v)])) for k, v in pairs)
    parts = [tag("caption", caption)] if caption else []
    return tag("div", tag("table", join([*parts, tag("tbody", rows)]), class_="data kv"),
               class_="table-scroll")


def figure(image: Image, title: str, explanation: Sequence[object], *, alt: str, wide: bool = False,
           fig_id: str | None = None) -> Raw:
    """A figure with its explanation beside it (below it when `wide`)."""
    img = Raw(f'<img src="{image.uri}" width="{image.width}" height="{image.height}" '
              f'alt="{escape(alt, quote=True)}">')
    caption = tag("figcaption", join([tag("h3", title), *(tag("p", p) for p in explanation)]))
    return tag("figure", join([img, caption]), class_="fig wide" if wide else "fig", id=fig_id)


def card(label: str, value: str, sub: str = "", good: bool = False) -> Raw:
    parts = [tag("div", label, class_="label"), tag("div", value, class_="value")]
    if sub:
        parts.append(tag("div", sub, class_="sub"))
    return tag("div", join(parts), class_="card good" if good else "card")


def section(section_id: str, title: str, lead: str, content: Sequence[object]) -> Raw:
    return tag("section", join([tag("h2", title), tag("p", lead, class_="lead"), *content]),
               class_="block", id=section_id)
