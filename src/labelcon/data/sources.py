"""Download the registered data sets from their official sources and convert them.

Every converter reads the original release files from a ``raw`` directory and writes the
labelcon layout (``train.jsonl``, ``dev.jsonl`` when the release has one, ``test.jsonl``,
``labels.txt`` for labelled sets), each file atomically, ``labels.txt`` last.

- GoEmotions (Demszky et al. 2020): ``{train,dev,test}.tsv`` (text, comma-separated label
  ids, comment id; CSV-style quoting) and ``emotions.txt`` (names in id order) from
  google-research/google-research ``goemotions/data``. Texts stripped; labels in id order.
- Reuters-21578 ModApte, 90 categories: ``reuters21578.tar.gz`` (UCI KDD archive).
  Train = ``LEWISSPLIT="TRAIN"``, test = ``LEWISSPLIT="TEST"``, both ``TOPICS="YES"``;
  the 90 categories are the TOPICS with at least one train and one test story; stories
  with none of them are left out (that is the definition of the 90-category set).
  Text = TITLE, newline, BODY with hard line wraps joined, one paragraph per line,
  entities decoded, control characters and the closing "Reuter" sign-off removed;
  headline-only (BRIEF) stories are the title, untagged (UNPROC) ones their raw text.
- STS Benchmark (Cer et al. 2017): ``Stsbenchmark.tar.gz``; ``sts-*.csv`` split on tabs
  only (they hold unbalanced quotes): genre, file, year, id, score, sentence1, sentence2.
  Output records ``{"text1", "text2", "score"}``, no labels.txt.

Raw files are kept in ``raw/`` after conversion, so a converter fix can re-run offline.

>>> sgml = ('<REUTERS TOPICS="YES" LEWISSPLIT="TRAIN" NEWID="1"><TOPICS><D>cocoa</D></TOPICS>'
...         '<TEXT>&#2;\\n<TITLE>BAHIA COCOA REVIEW</TITLE><BODY>Showers continued in\\nthe cocoa zone.\\n'
...         '    Arrivals rose.\\n Reuter\\n&#3;</BODY></TEXT></REUTERS>')
>>> list(parse_reuters_sgml(sgml))
[('TRAIN', ['cocoa'], 'BAHIA COCOA REVIEW\\nShowers continued in the cocoa zone.\\nArrivals rose.')]
"""

from __future__ import annotations

import csv
import html
import io
import json
import re
import shutil
import tarfile
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from labelcon.data.records import DataError
from labelcon.io import atomic_open

TIMEOUT_SECONDS = 60
GOEMOTIONS_URL = "https://raw.githubusercontent.com/google-research/google-research/master/goemotions/data/"
REUTERS_URL = "https://kdd.ics.uci.edu/databases/reuters21578/reuters21578.tar.gz"
STSB_URL = "http://ixa2.si.ehu.eus/stswiki/images/4/48/Stsbenchmark.tar.gz"


@dataclass(frozen=True)
class Source:
    """Where a data set comes from and how it becomes the labelcon layout."""

    raw_files: dict[str, str]  # file name in the raw directory -> URL
    convert: Callable[[Path, Path], None]  # (raw_dir, out_dir)
    outputs: tuple[str, ...]  # files the converted directory must hold


def download(url: str, target: Path, timeout: float = TIMEOUT_SECONDS) -> None:
    """Fetch ``url`` into ``target`` atomically (network errors propagate as OSError)."""
    with urllib.request.urlopen(url, timeout=timeout) as response, atomic_open(target, "wb") as out:
        shutil.copyfileobj(response, out)


def write_jsonl(path: Path, records: Iterable[dict]) -> None:
    with atomic_open(path) as out:
        for record in records:
            out.write(json.dumps(record, ensure_ascii=False) + "\n")


def write_lines(path: Path, lines: Iterable[str]) -> None:
    with atomic_open(path) as out:
        out.writelines(line + "\n" for line in lines)


# ---------------------------------------------------------------------- GoEmotions
def convert_goemotions(raw_dir: Path, out_dir: Path) -> None:
    names = [
        line.strip() for line in (raw_dir / "emotions.txt").read_text(encoding="utf-8").splitlines() if line.strip()
    ]
    for split in ("train", "dev", "test"):
        write_jsonl(out_dir / f"{split}.jsonl", _goemotions_rows(raw_dir / f"{split}.tsv", names))
    write_lines(out_dir / "labels.txt", names)


def _goemotions_rows(path: Path, names: list[str]) -> Iterable[dict]:
    reader = csv.reader(io.StringIO(path.read_text(encoding="utf-8"), newline=""), delimiter="\t", strict=True)
    for row in reader:
        if len(row) != 3 or not re.fullmatch(r"\d+(,\d+)*", row[1]):
            raise DataError(
                f"{path}, line {reader.line_num}: expected text<TAB>comma-separated label ids<TAB>comment id, "
                f"got {row!r:.120}"
            )
        ids = sorted({int(i) for i in row[1].split(",")})
        if ids[-1] >= len(names):
            raise DataError(f"{path}, line {reader.line_num}: expected label ids below {len(names)}, got {ids[-1]}")
        yield {"text": row[0].strip(), "labels": [names[i] for i in ids]}


# ---------------------------------------------------------------------- Reuters-21578
_STORY = re.compile(r"<REUTERS([^>]*)>(.*?)</REUTERS>", re.S)
_ATTR = re.compile(r'(\w+)="([^"]*)"')
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_SIGN_OFF = re.compile(r"(?:^|\s+)reuter$", re.I)


def convert_reuters(raw_dir: Path, out_dir: Path) -> None:
    stories = {"TRAIN": [], "TEST": []}
    with tarfile.open(raw_dir / "reuters21578.tar.gz") as archive:
        members = sorted(
            (m for m in archive.getmembers() if re.fullmatch(r"reut2-\d{3}\.sgm", Path(m.name).name)),
            key=lambda m: Path(m.name).name,
        )
        if not members:
            raise DataError(f"{raw_dir / 'reuters21578.tar.gz'}: expected reut2-000.sgm ... reut2-021.sgm, got none")
        for member in members:
            for split, topics, text in parse_reuters_sgml(archive.extractfile(member).read().decode("latin-1")):
                stories[split].append((topics, text))
    kept = sorted({t for ts, _ in stories["TRAIN"] for t in ts} & {t for ts, _ in stories["TEST"] for t in ts})
    keep = set(kept)
    for split, name in (("TRAIN", "train"), ("TEST", "test")):
        write_jsonl(
            out_dir / f"{name}.jsonl",
            (
                {"text": text, "labels": sorted(keep.intersection(topics))}
                for topics, text in stories[split]
                if keep.intersection(topics) and text
            ),
        )
    write_lines(out_dir / "labels.txt", kept)


def parse_reuters_sgml(sgml: str) -> Iterable[tuple[str, list[str], str]]:
    """``(split, topics, text)`` for each ModApte story (TOPICS="YES", LEWISSPLIT TRAIN/TEST)."""
    for attributes, body in _STORY.findall(sgml):
        attrs = dict(_ATTR.findall(attributes))
        if attrs.get("TOPICS") != "YES" or attrs.get("LEWISSPLIT") not in ("TRAIN", "TEST"):
            continue
        topics_block = re.search(r"<TOPICS>(.*?)</TOPICS>", body, re.S)
        topics = re.findall(r"<D>(.*?)</D>", topics_block.group(1)) if topics_block else []
        yield attrs["LEWISSPLIT"], topics, _reuters_text(body)


def _reuters_text(story: str) -> str:
    block = re.search(r"<TEXT([^>]*)>(.*?)</TEXT>", story, re.S)
    if block is None:
        return ""
    kind, content = block.groups()
    if "UNPROC" in kind:
        return "\n".join(_paragraph_lines(content, join_wrapped=False))
    title = _tag(content, "TITLE")
    title = " ".join(_clean(title).split())
    body = _tag(content, "BODY")
    paragraphs = _paragraph_lines(body, join_wrapped=True) if body else []
    return "\n".join(part for part in [title, *paragraphs] if part)


def _tag(content: str, name: str) -> str:
    match = re.search(rf"<{name}>(.*?)</{name}>", content, re.S)
    return match.group(1) if match else ""


def _clean(text: str) -> str:
    return _CONTROL.sub("", html.unescape(text))


def _paragraph_lines(text: str, join_wrapped: bool) -> list[str]:
    """Lines of ``text`` cleaned; with ``join_wrapped`` an indented line starts a paragraph
    and the others continue it. The trailing "Reuter" sign-off is dropped."""
    paragraphs: list[str] = []
    for line in _clean(text).split("\n"):
        words = " ".join(line.split())
        if not words:
            continue
        if join_wrapped and paragraphs and not line[:1].isspace():
            paragraphs[-1] += " " + words
        else:
            paragraphs.append(words)
    if paragraphs:
        last = _SIGN_OFF.sub("", paragraphs.pop())
        if last:
            paragraphs.append(last)
    return paragraphs


# ---------------------------------------------------------------------- STS Benchmark
def convert_stsb(raw_dir: Path, out_dir: Path) -> None:
    with tarfile.open(raw_dir / "Stsbenchmark.tar.gz") as archive:
        files = {Path(m.name).name: m for m in archive.getmembers() if m.isfile()}
        for split in ("train", "dev", "test"):
            name = f"sts-{split}.csv"
            if name not in files:
                raise DataError(f"{raw_dir / 'Stsbenchmark.tar.gz'}: expected stsbenchmark/{name}, got {sorted(files)}")
            text = archive.extractfile(files[name]).read().decode("utf-8")
            write_jsonl(out_dir / f"{split}.jsonl", _stsb_rows(text, f"{raw_dir / 'Stsbenchmark.tar.gz'}:{name}"))


def _stsb_rows(text: str, where: str) -> Iterable[dict]:
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        fields = line.rstrip("\r").split("\t")
        try:
            score = float(fields[4])
            yield {"text1": fields[5].strip(), "text2": fields[6].strip(), "score": score}
        except (IndexError, ValueError):
            raise DataError(
                f"{where}, line {number}: expected genre, file, year, id, score, sentence1, sentence2 "
                f"separated by tabs, got {line[:120]!r}"
            ) from None


SOURCES = {
    "goemotions": Source(
        {f"{split}.tsv": GOEMOTIONS_URL + f"{split}.tsv" for split in ("train", "dev", "test")}
        | {"emotions.txt": GOEMOTIONS_URL + "emotions.txt"},
        convert_goemotions,
        ("train.jsonl", "dev.jsonl", "test.jsonl", "labels.txt"),
    ),
    "reuters21578": Source(
        {"reuters21578.tar.gz": REUTERS_URL}, convert_reuters, ("train.jsonl", "test.jsonl", "labels.txt")
    ),
    "stsb": Source({"Stsbenchmark.tar.gz": STSB_URL}, convert_stsb, ("train.jsonl", "dev.jsonl", "test.jsonl")),
}
