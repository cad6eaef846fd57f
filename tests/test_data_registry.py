"""Dataset registry: where data sets are found, the offline message, the converters, the demo set.

No test touches the network: ``urllib.request.urlopen`` is replaced in every test that
could reach it, either by one that fails or by one that serves in-test fixtures written
in the original release formats.
"""

from __future__ import annotations

import io
import json
import tarfile
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

import pytest

from labelcon.data import (
    DataError,
    LabelSpace,
    PairDataset,
    demo_paths,
    load_split,
    read_dataset,
    registered_names,
    resolve_dataset,
)
from labelcon.data.sources import GOEMOTIONS_URL, REUTERS_URL, STSB_URL

SHARED = Path("/work/shared/data")

GOEMOTIONS_TSV = {
    "train.tsv": "My favourite food is anything I didn't have to cook myself.\t3\teebbqej\n"
    '"""Quoted"" start and a tab-free end "\t1,0\ted00q6i\n',
    "dev.tsv": "WHY THE FUCK IS BAYLESS ISOING\t2\teezlygj\n",
    "test.tsv": "To make her feel threatened  \t2,1,2\ted7ypvh\n",
}
EMOTIONS = "admiration\namusement\nanger\nneutral\n"

STORY = """<REUTERS TOPICS="{topics_flag}" LEWISSPLIT="{split}" CGISPLIT="TRAINING-SET" OLDID="5544" NEWID="{newid}">
<DATE>26-FEB-1987 15:01:01.79</DATE>
<TOPICS>{topics}</TOPICS>
<PLACES><D>el-salvador</D></PLACES>
<UNKNOWN> 
&#5;&#5;&#5;C T
&#22;&#22;&#1;f0704&#31;reute
u f BC-BAHIA-COCOA-REVIEW   02-26 0105</UNKNOWN>
<TEXT{kind}>&#2;
{text}</TEXT>
</REUTERS>
"""
NORMAL = """<TITLE>BAHIA COCOA REVIEW</TITLE>
<DATELINE>    SALVADOR, Feb 26 - </DATELINE><BODY>Showers continued throughout the week in
the Bahia cocoa zone, alleviating the drought since early
January.
    The dry period means the temporao will be late this year &lt;CCO>.
 Reuter
&#3;</BODY>"""


def story(newid, split, topics, text, kind="", topics_flag="YES"):
    tags = "".join(f"<D>{t}</D>" for t in topics)
    return STORY.format(newid=newid, split=split, topics=tags, text=text, kind=kind, topics_flag=topics_flag)


def reuters_tar() -> bytes:
    first = (
        '<!DOCTYPE lewis SYSTEM "lewis.dtd">\n'
        + story(1, "TRAIN", ["cocoa"], NORMAL)
        + story(
            2, "TRAIN", ["earn", "acq"], "<TITLE>ACME &lt;ACM> SETS QUARTERLY DIVIDEND</TITLE>\n&#3;", ' TYPE="BRIEF"'
        )
        + story(7, "TRAIN", ["wheat"], NORMAL)
        + story(5, "TRAIN", ["cocoa"], NORMAL, topics_flag="NO")
    )
    second = (
        story(3, "TEST", ["cocoa", "grain"], NORMAL)
        + story(4, "TEST", ["earn"], "  Shr 1.20 dlrs vs 1.10\n\t Net 5.0 mln vs 4.1\n Reuter\n&#3;", ' TYPE="UNPROC"')
        + story(6, "NOT-USED", ["earn"], NORMAL)
    )
    return make_tar({"reut2-000.sgm": first.encode("latin-1"), "reut2-001.sgm": second.encode("latin-1")})


def stsb_tar() -> bytes:
    rows = {
        "train": "main-captions\tMSRvid\t2012test\t0001\t5.000\tA plane is taking off.\tAn air plane is taking off.\n"
        'main-forum\tdeft-forum\t2014\t0002\t0.8\tShe said "hi\tHe left.\tCC-BY-SA\textra\n',
        "dev": "main-news\theadlines\t2014\t0193\t0\tFormer LAPD officer sought\tFormer CIA officer sentenced\n",
        "test": "main-captions\tMSRvid\t2012test\t0024\t2.500\tA girl is styling her hair.\t"
        "A girl is brushing her hair.\n",
    }
    return make_tar({f"stsbenchmark/sts-{split}.csv": text.encode() for split, text in rows.items()})


def make_tar(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, payload in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            archive.addfile(info, io.BytesIO(payload))
    return buffer.getvalue()


def serve(monkeypatch, payloads: dict[str, bytes]) -> list[str]:
    """Make urlopen serve ``payloads`` by URL (others fail as if offline); return the URLs asked for."""
    asked: list[str] = []

    def urlopen(url, timeout=None):
        asked.append(url)
        assert timeout is not None, "downloads must set a timeout"
        if url not in payloads:
            raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")
        return io.BytesIO(payloads[url])

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    return asked


@pytest.fixture
def homes(tmp_path, monkeypatch):
    """An empty user cache and no LABELCON_DATA."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("LABELCON_DATA", raising=False)
    return tmp_path


def layout(directory: Path, files=("train.jsonl", "dev.jsonl", "test.jsonl", "labels.txt")) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name in files:
        (directory / name).write_text("x\n" if name == "labels.txt" else '{"text": "t", "labels": ["x"]}\n')
    return directory


# ---------------------------------------------------------------------- where data sets are found
def test_data_dir_holding_name_or_the_files_themselves(homes):
    root = homes / "mine"
    nested = layout(root / "goemotions")
    assert resolve_dataset("goemotions", root) == nested
    assert resolve_dataset("goemotions", nested) == nested
    assert load_split("goemotions", "dev", data_dir=str(root)).labels == [("x",)]


def test_env_var_then_user_cache(homes, monkeypatch):
    cached = layout(
        homes / "cache" / "labelcon" / "datasets" / "reuters21578", ("train.jsonl", "test.jsonl", "labels.txt")
    )
    assert resolve_dataset("reuters21578") == cached
    monkeypatch.setenv("LABELCON_DATA", str(homes / "shared"))
    assert resolve_dataset("reuters21578") == cached  # env dir lacks it: fall through to the cache
    shared = layout(homes / "shared" / "reuters21578", ("train.jsonl", "test.jsonl", "labels.txt"))
    assert resolve_dataset("reuters21578") == shared


def test_home_cache_when_xdg_is_unset(homes, monkeypatch):
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(homes / "home"))
    target = layout(
        homes / "home" / ".cache" / "labelcon" / "datasets" / "stsb", ("train.jsonl", "dev.jsonl", "test.jsonl")
    )
    assert resolve_dataset("stsb") == target


def test_labelcon_cache_holds_data_sets_as_it_holds_models(homes, monkeypatch):
    from labelcon.io import cache_dir

    monkeypatch.setenv("LABELCON_CACHE", str(homes / "own"))
    target = layout(homes / "own" / "datasets" / "stsb", ("train.jsonl", "dev.jsonl", "test.jsonl"))
    assert resolve_dataset("stsb") == target and cache_dir() == homes / "own"


def test_offline_error_says_where_to_put_which_files(homes, monkeypatch):
    asked = serve(monkeypatch, {})
    with pytest.raises(DataError) as caught:
        resolve_dataset("goemotions")
    message = str(caught.value)
    target = homes / "cache" / "labelcon" / "datasets" / "goemotions"
    assert asked == [GOEMOTIONS_URL + "train.tsv"]
    for needle in (
        f"{target}/",
        "train.jsonl, dev.jsonl, test.jsonl, labels.txt",
        "--data-dir DIR",
        "LABELCON_DATA=DIR",
        "DIR/goemotions/",
        str(target / "raw" / "emotions.txt"),
        GOEMOTIONS_URL + "emotions.txt",
        "Temporary failure in name resolution",
    ):
        assert needle in message
    assert list((target / "raw").iterdir()) == []  # no half-downloaded file left behind


def test_explicit_data_dir_is_where_a_fetch_goes(homes, monkeypatch):
    serve(monkeypatch, {})
    with pytest.raises(DataError, match=str(homes / "elsewhere" / "stsb" / "raw" / "Stsbenchmark.tar.gz")):
        resolve_dataset("stsb", homes / "elsewhere")


def test_registered_names_are_what_resolve_dataset_knows_and_what_the_readme_lists():
    assert registered_names() == ("demo", "goemotions", "reuters21578", "stsb")
    assert registered_names(labelled_only=True) == ("demo", "goemotions", "reuters21578")
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    paragraph = readme.split("## Real data sets\n\n", 1)[1].split("\n\n", 1)[0]
    assert paragraph.startswith("The registered data sets are")
    assert [name for name in registered_names() if f"`{name}`" not in paragraph] == []


def test_unknown_name_and_split(homes):
    with pytest.raises(DataError, match=r"registered data set name, got 'imdb'; registered: demo .*goemotions"):
        resolve_dataset("imdb")
    with pytest.raises(DataError, match=r"expected a split in \('train', 'dev', 'test'\), got 'validation'"):
        load_split("demo", "validation")
    layout(homes / "d" / "reuters21578", ("train.jsonl", "test.jsonl", "labels.txt"))
    with pytest.raises(DataError, match="reuters21578 has no dev split: .*train_dev_split"):
        load_split("reuters21578", "dev", data_dir=homes / "d")


# ---------------------------------------------------------------------- download and conversion
def test_goemotions_downloaded_and_converted(homes, monkeypatch):
    payloads = {GOEMOTIONS_URL + name: text.encode() for name, text in GOEMOTIONS_TSV.items()}
    payloads[GOEMOTIONS_URL + "emotions.txt"] = EMOTIONS.encode()
    serve(monkeypatch, payloads)
    root = resolve_dataset("goemotions")
    assert (root / "labels.txt").read_text().split() == ["admiration", "amusement", "anger", "neutral"]
    train = load_split("goemotions", "train")
    assert train.texts == [
        "My favourite food is anything I didn't have to cook myself.",
        '"Quoted" start and a tab-free end',
    ]
    assert train.labels == [("neutral",), ("admiration", "amusement")]
    assert load_split("goemotions", "test").labels == [("amusement", "anger")]
    assert load_split("goemotions", "test").texts == ["To make her feel threatened"]
    serve(monkeypatch, {})  # now offline: the converted copy is used
    assert resolve_dataset("goemotions") == root


def test_reuters_modapte_conversion_from_files_put_in_raw_by_hand(homes, monkeypatch):
    asked = serve(monkeypatch, {})
    raw = homes / "data" / "reuters21578" / "raw"
    raw.mkdir(parents=True)
    (raw / "reuters21578.tar.gz").write_bytes(reuters_tar())
    root = resolve_dataset("reuters21578", homes / "data")
    assert asked == []
    assert (root / "labels.txt").read_text().split() == ["cocoa", "earn"]  # acq, wheat: train only; grain: test only
    train = read_dataset(root / "train.jsonl")
    assert train.labels == [("cocoa",), ("earn",)]
    assert train.texts[0] == (
        "BAHIA COCOA REVIEW\nShowers continued throughout the week in the Bahia cocoa zone, alleviating the "
        "drought since early January.\nThe dry period means the temporao will be late this year <CCO>."
    )
    assert train.texts[1] == "ACME <ACM> SETS QUARTERLY DIVIDEND"
    test = read_dataset(root / "test.jsonl")
    assert test.labels == [("cocoa",), ("earn",)]
    assert test.texts[1] == "Shr 1.20 dlrs vs 1.10\nNet 5.0 mln vs 4.1"


def test_stsb_downloaded_and_converted_to_pairs(homes, monkeypatch):
    serve(monkeypatch, {STSB_URL: stsb_tar()})
    train = load_split("stsb", "train")
    assert isinstance(train, PairDataset)
    assert train.texts1 == ["A plane is taking off.", 'She said "hi']
    assert train.texts2 == ["An air plane is taking off.", "He left."]
    assert train.scores == [5.0, 0.8]
    assert load_split("stsb", "test").scores == [2.5]
    assert not (resolve_dataset("stsb") / "labels.txt").exists()


def test_converter_errors_name_the_raw_file_and_line(homes, monkeypatch):
    serve(monkeypatch, {REUTERS_URL: make_tar({"README.txt": b"nothing here"})})
    with pytest.raises(DataError, match=r"reuters21578\.tar\.gz: expected reut2-000\.sgm"):
        resolve_dataset("reuters21578")
    payloads = {GOEMOTIONS_URL + name: b"no tabs here\n" for name in GOEMOTIONS_TSV}
    payloads[GOEMOTIONS_URL + "emotions.txt"] = EMOTIONS.encode()
    serve(monkeypatch, payloads)
    with pytest.raises(DataError, match=r"train\.tsv, line 1: expected text<TAB>comma-separated label ids"):
        resolve_dataset("goemotions")


@pytest.mark.skipif(not (SHARED / "goemotions" / "dev.jsonl").exists(), reason="shared data not mounted")
def test_shared_data_directory_layout_reads():
    dev = load_split("goemotions", "dev", data_dir=SHARED)
    space = LabelSpace.from_label_sets(dev.labels, labels_file=resolve_dataset("goemotions", SHARED) / "labels.txt")
    assert len(dev) == 5426 and len(space) == 28


# ---------------------------------------------------------------------- the demo data set
def test_demo_data_set_shape():
    paths = demo_paths()
    assert sorted(paths) == ["dev", "labels", "test", "train"] and all(p.is_file() for p in paths.values())
    assert (paths["train"].parent / "README.md").is_file()
    names = [line for line in paths["labels"].read_text().splitlines() if line]
    assert len(names) == 10
    splits = {name: read_dataset(paths[name]) for name in ("train", "dev", "test")}
    assert [len(splits[name]) for name in ("train", "dev", "test")] == [240, 60, 60]
    every = [labels for ds in splits.values() for labels in ds.labels]
    assert 0.35 <= sum(len(labels) >= 2 for labels in every) / len(every) <= 0.5
    assert max(map(len, every)) == 3
    train_counts = Counter(label for labels in splits["train"].labels for label in labels)
    assert set(train_counts) == set(names) and min(train_counts.values()) >= 15
    texts = [t for ds in splits.values() for t in ds.texts]
    assert len(set(texts)) == len(texts)
    for ds in splits.values():  # every split's labels are in labels.txt order
        LabelSpace.from_label_sets(ds.labels, labels_file=paths["labels"])
        assert all(list(labels) == sorted(labels, key=names.index) for labels in ds.labels)
    assert json.loads(paths["train"].read_text().splitlines()[0])["labels"] == ["shipping"]
