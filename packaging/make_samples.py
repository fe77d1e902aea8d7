"""Write the sample project's documents: resources/samples/ as a PDF, a DOCX and a TXT.

The text is our own (a fictional community garden), so the sample can ship with the app. Run
once after changing the text (`python packaging/make_samples.py`); the files are committed, so
builds need neither this script nor python-docx. Qt writes the PDF (QTextDocument on a
QPdfWriter), python-docx the Word file.
"""

from __future__ import annotations

import html
import os
import sys
from pathlib import Path
from typing import NamedTuple

SAMPLES_DIR = Path(__file__).resolve().parents[1] / "resources" / "samples"


class Section(NamedTuple):
    heading: str
    paragraphs: tuple[str, ...] = ()
    bullets: tuple[str, ...] = ()


class Document(NamedTuple):
    file_name: str
    title: str
    subtitle: str
    sections: tuple[Section, ...]


GROWING_GUIDE = Document(
    "willow-lane-growing-guide.pdf",
    "Willow Lane Community Garden: Growing Guide",
    "How we grow food together on the old tram depot lot, season by season.",
    (
        Section("Our beds and our soil", (
            "The garden has twenty-four raised beds, each 1.2 metres wide and 3 metres long, "
            "built from untreated larch boards. The width is chosen so that nobody has to step "
            "on the soil: you can reach the middle of a bed from either path. Compacted soil "
            "drains badly and roots struggle in it, so please keep your feet on the wood-chip "
            "paths.",
            "The lot was a tram depot until 1987, so the original ground is not used for food. "
            "Every bed sits on a permeable membrane and was filled with a mix of two parts "
            "screened topsoil to one part garden compost. Each autumn every bed receives a "
            "five-centimetre layer of compost from our own bins, spread on the surface. We do "
            "not dig it in: worms do that work over the winter, and the soil life stays "
            "undisturbed.",
        )),
        Section("Watering", (
            "Water early in the morning or after six in the evening, when less is lost to "
            "evaporation. Water the soil at the base of the plants, not the leaves: wet leaves "
            "in the evening invite mildew, especially on courgettes and squash.",
            "A deep soaking twice a week does more good than a sprinkle every day, because it "
            "sends roots down where the soil stays moist. Push a finger into the soil up to the "
            "second knuckle; if it feels dry there, it is time to water. Seedlings and "
            "newly planted beds are the exception and need a light watering every day for "
            "their first two weeks.",
            "The two rain tanks by the shed hold 1,500 litres together. Use them first. The "
            "mains tap is for dry spells only, and the hose must always end in the trigger "
            "nozzle that hangs beside it.",
        )),
        Section("What to plant when", (
            "Our last frost usually comes in the second half of April and the first frost in "
            "late October. The planting calendar in the shed is the reference; in short:",
        ), (
            "March: broad beans, early peas, radishes and spinach, sown directly in the beds.",
            "April: carrots, beetroot, lettuce and chard; potatoes in the two deep beds at the "
            "back.",
            "Mid-May, after the frost: tomatoes, courgettes, squash, French beans and basil, "
            "from plants raised in the greenhouse.",
            "August: a second sowing of lettuce, rocket and spinach for autumn salads.",
            "October: garlic cloves and overwintering onion sets.",
        )),
        Section("Pests, the gentle way", (
            "We use no chemical pesticides or slug pellets anywhere in the garden. Slugs are "
            "collected by hand on damp evenings and taken to the meadow behind the railway "
            "embankment. Copper tape around the lettuce beds helps, and so do the beer traps, "
            "which should be emptied every three days.",
            "Fine insect mesh keeps carrot fly and cabbage white butterflies off the crops. "
            "Nasturtiums and marigolds are sown along the bed edges to draw aphids away and "
            "bring in hoverflies, whose larvae eat aphids by the hundred. The hedgehog house "
            "under the hazel must never be moved.",
        )),
        Section("Harvest and the sharing table", (
            "Pick courgettes and beans often and young: the more you pick, the more the plants "
            "produce. When your plot gives more than you can eat, leave the surplus on the "
            "sharing table at the gate before ten in the morning. Neighbours may take what "
            "they like, and whatever is left at six in the evening goes to the compost.",
        )),
    ),
)

HANDBOOK = Document(
    "willow-lane-members-handbook.docx",
    "Willow Lane Community Garden: Members' Handbook",
    "Everything a new member needs to know, from the gate code to the compost rota.",
    (
        Section("Joining", (
            "Membership is open to anyone who lives within walking distance of the garden. "
            "The yearly fee is 35 euros for a half bed and 60 euros for a full bed, due in "
            "February. Members who cannot pay the fee can instead give four extra hours of "
            "work during the season; just tell the coordinator, no questions are asked.",
            "New members are paired with an experienced gardener, their garden buddy, for "
            "their first season. Your buddy shows you the shed, the rota and the planting "
            "calendar, and is the first person to ask when something in your bed looks wrong.",
        )),
        Section("Your plot", (
            "A plot must be planted by the end of May. If a plot stays empty or overgrown for "
            "six weeks, the coordinator will get in touch; after a second reminder the plot "
            "goes to the next person on the waiting list. Holidays are not a problem: tell "
            "your buddy when you are away and someone will water for you.",
            "Plants taller than 1.8 metres, such as sunflowers and runner beans, belong in the "
            "beds along the north fence, where they do not shade anyone else's crops.",
        )),
        Section("The tool shed", (
            "The shed is open from 7 in the morning until dusk. The gate and shed share one "
            "code, which changes on the first of each month and is sent to members by text "
            "message. Please do not write it on the gate.",
        ), (
            "Clean the soil off every tool before you hang it back on its outline on the wall.",
            "The wheelbarrows live upside down behind the shed, so they do not fill with rain.",
            "Broken tools go in the red crate, with a note saying what is wrong.",
            "Seeds are shared: take what you need from the seed tin and write it in the book.",
        )),
        Section("Work mornings", (
            "On the first Saturday of every month, from 9 until noon, we look after the shared "
            "parts of the garden together: paths, hedges, the greenhouse, the pond and the "
            "compost bins. Every member is asked to come to at least four work mornings a "
            "year. There is always tea, and in summer there is usually cake.",
        )),
        Section("Compost", (
            "We have three bins, used in turn. Bin one takes fresh material: vegetable "
            "scraps, spent plants, grass clippings and shredded cardboard. Bin two is left to "
            "rot. Bin three is ready compost, sieved in September and spread on the beds in "
            "October. Never add cooked food, meat, dairy, diseased plants or the roots of "
            "bindweed and couch grass.",
        )),
        Section("Children and pets", (
            "Children are very welcome and have their own bed next to the pond, with a "
            "low fence around the water. Dogs may visit on a lead but are kept out of the "
            "beds and the children's area. Please take your dog's waste home with you.",
        )),
    ),
)

FAQ = Document(
    "willow-lane-faq.txt",
    "Willow Lane Community Garden: Questions and Answers",
    "Short answers to what visitors and new members ask most often.",
    (
        Section("Where is the garden, and when is it open?", (
            "The garden is at the end of Willow Lane, behind the old tram depot. Members can "
            "come in at any time between 7 in the morning and dusk. Visitors are welcome "
            "every Sunday afternoon from 2 to 5, when a member is always at the gate.",
        )),
        Section("Can I join if I have never grown anything?", (
            "Yes. Most of our members started as beginners. Every new member gets a garden "
            "buddy for the first season, and the Saturday work mornings are the best place to "
            "learn by doing.",
        )),
        Section("How long is the waiting list?", (
            "It is usually between three and nine months. Beds become free in January, when "
            "members renew, so that is when most people on the list are offered one. A half "
            "bed is a good way to start.",
        )),
        Section("Who decides how the garden is run?", (
            "The members do. We meet on the last Thursday of each month at 7 in the evening, "
            "in the greenhouse in summer and at the library on Station Road in winter. A "
            "coordinator and a treasurer are elected every March for one year.",
        )),
        Section("Do you use any chemicals?", (
            "No. The garden has been run without synthetic fertilisers, weed killers and "
            "pesticides since it opened in 2011. We feed the soil with our own compost and "
            "control pests by hand, with mesh, and by inviting birds, frogs, hedgehogs and "
            "hoverflies.",
        )),
        Section("What happens to the harvest?", (
            "Each member keeps what grows on their own plot. Surplus goes to the sharing table "
            "at the gate. The herbs, fruit bushes and apple trees are shared: anyone may pick "
            "a handful, and the apples are pressed into juice together on the second Saturday "
            "of October.",
        )),
        Section("Can schools or groups visit?", (
            "Yes, on weekday mornings by arrangement. Write to the coordinator at least two "
            "weeks ahead. Groups of up to fifteen children can plant something in the "
            "children's bed and take home a pot of herbs.",
        )),
        Section("What should I bring on my first day?", (
            "Sturdy shoes, gardening gloves if you have them, and a water bottle. Tools, "
            "seeds and the kettle are already in the shed.",
        )),
    ),
)


def write_pdf(document: Document, path: Path) -> None:
    from PySide6.QtCore import QMarginsF, QSizeF
    from PySide6.QtGui import QPageLayout, QPageSize, QPdfWriter, QTextDocument

    writer = QPdfWriter(str(path))
    writer.setTitle(document.title)
    writer.setCreator("FineTuneFlow sample")
    writer.setPageLayout(QPageLayout(QPageSize(QPageSize.PageSizeId.A4),
                                     QPageLayout.Orientation.Portrait,
                                     QMarginsF(20, 20, 20, 20), QPageLayout.Unit.Millimeter))
    text = QTextDocument()
    # Lay out at the writer's resolution, so point sizes are true on paper (not screen-scaled).
    text.documentLayout().setPaintDevice(writer)
    text.setPageSize(QSizeF(writer.width(), writer.height()))
    text.setDefaultStyleSheet("body { font-family: sans-serif; font-size: 10.5pt; } "
                              "h1 { font-size: 17pt; } h2 { font-size: 13pt; }")
    text.setHtml(to_html(document))
    text.print_(writer)


def to_html(document: Document) -> str:
    parts = [f"<h1>{html.escape(document.title)}</h1>",
             f"<p><i>{html.escape(document.subtitle)}</i></p>"]
    for section in document.sections:
        parts.append(f"<h2>{html.escape(section.heading)}</h2>")
        parts += [f"<p>{html.escape(paragraph)}</p>" for paragraph in section.paragraphs]
        if section.bullets:
            items = "".join(f"<li>{html.escape(item)}</li>" for item in section.bullets)
            parts.append(f"<ul>{items}</ul>")
    return f"<html><body>{''.join(parts)}</body></html>"


def write_docx(document: Document, path: Path) -> None:
    from docx import Document as WordDocument

    word = WordDocument()
    word.core_properties.title = document.title
    word.core_properties.author = "FineTuneFlow sample"
    word.add_heading(document.title, level=1)
    word.add_paragraph(document.subtitle).runs[0].italic = True
    for section in document.sections:
        word.add_heading(section.heading, level=2)
        for paragraph in section.paragraphs:
            word.add_paragraph(paragraph)
        for item in section.bullets:
            word.add_paragraph(item, style="List Bullet")
    word.save(str(path))


def to_text(document: Document) -> str:
    lines = [document.title, "=" * len(document.title), "", document.subtitle, ""]
    for section in document.sections:
        lines += [section.heading, "-" * len(section.heading), ""]
        for paragraph in section.paragraphs:
            lines += [paragraph, ""]
        lines += [f"* {item}" for item in section.bullets]
        if section.bullets:
            lines.append("")
    return "\n".join(lines)


def main() -> int:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtGui import QGuiApplication

    _app = QGuiApplication.instance() or QGuiApplication(sys.argv[:1])  # fonts for the PDF
    SAMPLES_DIR.mkdir(parents=True, exist_ok=True)
    write_pdf(GROWING_GUIDE, SAMPLES_DIR / GROWING_GUIDE.file_name)
    write_docx(HANDBOOK, SAMPLES_DIR / HANDBOOK.file_name)
    (SAMPLES_DIR / FAQ.file_name).write_text(to_text(FAQ), encoding="utf-8", newline="\n")
    for document in (GROWING_GUIDE, HANDBOOK, FAQ):
        print(SAMPLES_DIR / document.file_name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
