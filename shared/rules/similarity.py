"""Short texts compared by their words and by their meaning, offline. Pure functions over an index built once.

``build_index(entries, models)`` indexes ``(key, text)`` pairs (a project's known issues, or resolved tickets);
``similarities(index, text, models)`` scores a new text against every entry, best first. Each score is in [0, 1]:

- lexical: BM25 (k1 1.2, b 0.75) over tokens: English words (lowercased, common words left out, a plural or
  ``-ed``/``-ing`` ending cut) and, for Chinese, the words of the injected segmenter (jieba) plus every single
  character, so a word the segmenter cuts differently still meets its characters. The sum is divided by the
  query's own ceiling, the score a document holding every query token would reach as its counts grow, where a
  token no entry has counts at the highest idf: a report that shares one word with an entry and has many words
  no entry has scores low.
- semantic: the cosine of the injected embeddings (WordLlama's ``l2_supercat`` 256-d token embeddings averaged,
  shipped inside the wheel), below 0 taken as 0. With no embedding the score is the lexical one alone.

The combined score is ``LEXICAL_WEIGHT * lexical + (1 - LEXICAL_WEIGHT) * semantic``; the weight and the
thresholds the callers use were chosen on tests/data/known_issue_reports.jsonl (``python -m
bench.known_issue_match``). Loading the models is I/O and happens in wiring (``load_text_models``), never here.
"""

from __future__ import annotations

import functools
import math
import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

LEXICAL_WEIGHT = 0.7
K1, B = 1.2, 0.75

Segment = Callable[[str], Sequence[str]]
"""Chinese word segmentation: a run of Chinese characters -> its words."""
Vectors = NDArray[np.float64]
Embed = Callable[[Sequence[str]], Vectors]
"""Texts -> one unit-length row each (a text with no known token: zeros)."""

_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+")
_WORD = re.compile(r"[a-z0-9]+")
_STOP_EN = frozenset(
    (  # a word list reads better as one string  # noqa: SIM905
        "a an the i me my we our us you your he she it its they them this that these those is are was were be been "
        "am to of in on at for with from by and or but so do does did done have has had can could would should will "
        "just still all any there here what when why how which who after before about into out up as if not no "
        "i'm im it's dont don't cant can't"
    ).split()
)
_STOP_ZH = frozenset("的了是我你他她它在也都就吗呢啊吧和与或会很还又把被给这那个着")


def _stem(word: str) -> str:
    for suffix in ("ing", "ed", "es", "s"):
        if len(word) > len(suffix) + 2 and word.endswith(suffix):
            return word[: -len(suffix)]
    return word


def tokens(text: str, segment: Segment) -> list[str]:
    """The lexical tokens of a text: English words (stemmed, without common words), Chinese words and characters."""
    lowered = text.lower()
    out = [_stem(w) for w in _WORD.findall(lowered) if w not in _STOP_EN]
    for run in _HAN.findall(lowered):
        out.extend(w for w in segment(run) if w not in _STOP_ZH and len(w) > 1)
        out.extend(c for c in run if c not in _STOP_ZH)
    return out


def char_segment(run: str) -> list[str]:
    """A segmenter that knows no words (each character alone): for tests, and what ``tokens`` adds anyway."""
    return list(run)


@dataclass(frozen=True)
class TextModels:
    """What texts are compared with, loaded once in wiring: the Chinese segmenter and, optionally, the embedding."""

    segment: Segment
    embed: Embed | None = None
    name: str = "lexical"


@dataclass(frozen=True)
class TextIndex:
    """Entries ready to be compared with: token counts, BM25's idf and each entry's embedding."""

    keys: tuple[str, ...]
    counts: tuple[Mapping[str, int], ...]
    lengths: tuple[int, ...]
    idf: Mapping[str, float]
    max_idf: float
    average_length: float
    vectors: Vectors | None


@dataclass(frozen=True, slots=True)
class Similarity:
    key: str
    score: float
    lexical: float
    semantic: float | None


def build_index(entries: Sequence[tuple[str, str]], models: TextModels) -> TextIndex:
    """An index of ``(key, text)`` entries (keys as given, texts tokenised and embedded once)."""
    counts = tuple(Counter(tokens(text, models.segment)) for _, text in entries)
    n = len(entries)
    df: Counter[str] = Counter()
    for c in counts:
        df.update(c.keys())
    idf = {t: math.log(1 + (n - f + 0.5) / (f + 0.5)) for t, f in df.items()}
    lengths = tuple(sum(c.values()) for c in counts)
    vectors = None
    if models.embed is not None and entries:
        vectors = models.embed([text for _, text in entries])
    return TextIndex(
        keys=tuple(k for k, _ in entries),
        counts=counts,
        lengths=lengths,
        idf=idf,
        max_idf=math.log(1 + (n + 0.5) / 0.5) if n else 0.0,
        average_length=(sum(lengths) / n) if n else 0.0,
        vectors=vectors,
    )


def lexical_scores(index: TextIndex, query: Sequence[str]) -> list[float]:
    """BM25 of the query tokens against each entry, divided by the query's ceiling (see the module doc)."""
    terms = set(query)
    ceiling = sum(index.idf.get(t, index.max_idf) for t in terms) * (K1 + 1)
    if not ceiling:
        return [0.0] * len(index.keys)
    out = []
    for counts, length in zip(index.counts, index.lengths, strict=True):
        norm = K1 * (1 - B + B * length / index.average_length) if index.average_length else K1
        s = sum(index.idf[t] * counts[t] * (K1 + 1) / (counts[t] + norm) for t in terms if t in counts)
        out.append(s / ceiling)
    return out


@functools.lru_cache(maxsize=16)
def analysed(text: str, models: TextModels) -> tuple[tuple[str, ...], Any]:
    """A text's tokens and embedding, computed once for the few texts in hand: a new report is compared with the
    known issues and with the past tickets, and is tokenised and embedded only once for both."""
    vector = models.embed([text])[0] if models.embed is not None else None
    return tuple(tokens(text, models.segment)), vector


def similarities(index: TextIndex, text: str, models: TextModels) -> list[Similarity]:
    """Every entry's similarity to ``text``, best first (ties in index order)."""
    if not index.keys:
        return []
    words, vector = analysed(text, models)
    lexical = lexical_scores(index, words)
    semantic: list[float | None] = [None] * len(index.keys)
    if vector is not None and index.vectors is not None:
        cosines = np.clip(index.vectors @ vector, 0.0, 1.0)
        semantic = [float(c) for c in cosines]
    found = [
        Similarity(key, combine(lex, sem), lex, sem)
        for key, lex, sem in zip(index.keys, lexical, semantic, strict=True)
    ]
    return sorted(found, key=lambda s: -s.score)


def combine(lexical: float, semantic: float | None) -> float:
    if semantic is None:
        return lexical
    return LEXICAL_WEIGHT * lexical + (1 - LEXICAL_WEIGHT) * semantic


def load_text_models(*, embedding: bool = True) -> TextModels:
    """jieba's segmenter (rjieba: jieba-rs with jieba's dictionary built in; the same words as the Python jieba
    in a third of its memory) and WordLlama's ``l2_supercat`` 256-d embedding, read from the files inside the
    installed wheel. Nothing is downloaded: wordllama's own loader looks for the tokenizer under a folder name the
    wheel does not have and would fall back to the network, so the files are opened here. I/O: call it from a
    service's wiring, once (about 0.5 s and 70 MB, most of it jieba's dictionary)."""
    from pathlib import Path

    import rjieba

    segmenter = rjieba.Jieba()  # jieba's dictionary, inside the wheel (jieba-rs)

    def segment(run: str) -> list[str]:
        return segmenter.cut(run)

    if not embedding:
        return TextModels(segment, None, "jieba")

    import importlib.util

    from safetensors.numpy import load_file
    from tokenizers import Tokenizer

    # the wheel's files, found without importing the package (its __init__ pulls in requests and more, ~24 MB)
    spec = importlib.util.find_spec("wordllama")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("wordllama is not installed (uv sync)")
    root = Path(spec.submodule_search_locations[0])
    # kept as shipped (float16, 16 MB): a text's rows are gathered and summed in float32, as WordLlama does
    weights = load_file(str(root / "weights" / "l2_supercat_256.safetensors"))["embedding.weight"]
    tokenizer = Tokenizer.from_file(str(root / "tokenizers" / "l2_supercat_tokenizer_config.json"))
    tokenizer.no_padding()
    tokenizer.no_truncation()
    last = weights.shape[0] - 1

    def embed(texts: Sequence[str]) -> Vectors:
        """WordLlama's dense embedding (its ``embed(..., norm=True)``): the mean of the text's token vectors, unit
        length; a text without tokens is all zeros."""
        out = np.zeros((len(texts), weights.shape[1]), dtype=np.float64)
        for i, enc in enumerate(tokenizer.encode_batch(list(texts), add_special_tokens=False)):
            if not enc.ids:
                continue
            ids = np.clip(np.asarray(enc.ids, dtype=np.int64), 0, last)
            pooled = np.sum(weights[ids].astype(np.float32), axis=0, dtype=np.float32) / np.float32(len(ids))
            norm = float(np.linalg.norm(pooled))
            if norm > 0:
                out[i] = pooled / norm
        return out

    return TextModels(segment, embed, "jieba+wordllama-l2_supercat-256")
