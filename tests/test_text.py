"""Text: vocabularies, reading the corpus, and sampling from a language model."""

from __future__ import annotations

import json
import math
import os
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

import bptt
from bptt.checkpoint import Checkpoint, save_checkpoint
from bptt.cli import main
from bptt.corpus import Corpus, CorpusError, default_corpus_files, encode_corpus, read_corpus
from bptt.optim import Adam
from bptt.sampling import default_prime, next_token, sample_text
from bptt.train import TrainConfig, prepare_data
from bptt.vocab import UNK, Vocabulary, tokenize_words, word_chunks


def _logits(p):
    """Log-probabilities as logits (-inf where p = 0)."""
    with np.errstate(divide="ignore"):
        return np.log(np.asarray(p, dtype=np.float64))


# -- vocabulary ----------------------------------------------------------------------------


def test_char_vocabulary_round_trip():
    text = "Hello, wörld!\n\tTabs, ünïcode ✓ and emoji 🐍."
    v = Vocabulary.build([text, "xyz"])
    assert v.level == "char"
    assert v.tokens == tuple(sorted(set(text + "xyz")))
    ids = v.encode(text)
    assert ids.dtype == np.int32 and ids.shape == (len(text),)
    assert [v.tokens[i] for i in ids] == list(text)
    assert v.decode(ids) == text
    assert v.decode(ids.tolist()) == text
    assert v.encode("").shape == (0,) and v.decode([]) == ""


def test_char_strict_encode_names_every_unknown_character():
    v = Vocabulary.build(["abc"])
    with pytest.raises(ValueError, match=r"text has 2 chars outside the vocabulary: 'x', 'é'$"):
        v.encode("abxcéxa")
    with pytest.raises(ValueError, match=r"outside the vocabulary"):
        v.encode("z", strict=False)  # no <unk> in a char vocabulary: still an error
    many = "".join(chr(0x4E00 + i) for i in range(12))
    with pytest.raises(ValueError, match=r"text has 12 chars outside the vocabulary: .* …$"):
        v.encode(many)
    assert v.unknown("abxcéxa") == ["x", "é"]


def test_tokenize_words_joins_back():
    text = "The cat's  hat,\n\tthe  CAT — naïve déjà-vu!  42x"
    tokens = tokenize_words(text)
    assert "".join(tokens) == text
    assert tokens[:6] == ["The", " ", "cat", "'", "s", "  "]
    assert "naïve" in tokens and "—" in tokens and "\n\t" in tokens


def test_word_vocabulary_keeps_max_size_tokens_including_unk():
    text = "a a a b b c d"  # counts: ' ' 6, a 3, b 2, c 1, d 1
    v = Vocabulary.build([text], level="word", max_size=4)
    assert v.level == "word" and len(v) == 4
    assert v.tokens[0] == UNK and set(v.tokens) == {UNK, " ", "a", "b"}
    ids = v.encode("a c d b e", strict=False)
    unk = v.tokens.index(UNK)
    assert [v.tokens[i] for i in ids] == ["a", " ", UNK, " ", UNK, " ", "b", " ", UNK]
    assert ids[2] == ids[4] == ids[8] == unk
    assert v.decode(ids) == "a <unk> <unk> b <unk>"
    with pytest.raises(ValueError, match=r"text has 3 words outside the vocabulary: 'c', 'd', 'e'"):
        v.encode("a c d b e")  # strict is the default


@pytest.mark.parametrize("max_size", [2, 3, 5, 8])
def test_word_vocabulary_size_and_tie_breaking(max_size):
    text = "b a c a d e c a"  # ' ' 7, a 3, c 2, then b d e once each (ties broken by text)
    v = Vocabulary.build([text], level="word", max_size=max_size)
    ranked = [" ", "a", "c", "b", "d", "e"]
    assert len(v) == min(max_size, len(ranked) + 1)
    assert set(v.tokens) == {UNK, *ranked[: max_size - 1]}
    again = Vocabulary.build([text], level="word", max_size=max_size)
    assert again.tokens == v.tokens  # deterministic


def test_word_vocabulary_without_limit_round_trips():
    texts = ["The cat sat.\nThe dog ran!", "  naïve café, 3 cats\t"]
    v = Vocabulary.build(texts, level="word")
    assert v.tokens[0] == UNK
    for t in texts:
        assert v.decode(v.encode(t)) == t
        assert v.decode(v.encode(t, strict=False)) == t


@pytest.mark.parametrize("level, max_size", [("char", None), ("word", None), ("word", 3)])
def test_vocabulary_json_round_trip(level, max_size):
    v = Vocabulary.build(["naïve café ✓, the the end"], level=level, max_size=max_size)
    data = v.to_json()
    assert data == {"level": level, "tokens": list(v.tokens)}
    back = Vocabulary.from_json(json.loads(json.dumps(data)))
    assert back == v and back.tokens == v.tokens and back.level == v.level
    text = "the café"
    assert (back.encode(text, strict=False) == v.encode(text, strict=False)).all()


def test_vocabulary_validation():
    with pytest.raises(ValueError, match=r"level must be one of \['char', 'word'\], got 'byte'"):
        Vocabulary(("a",), "byte")
    with pytest.raises(ValueError, match=r"level must be one of"):
        Vocabulary.build(["a"], level="byte")
    with pytest.raises(ValueError, match=r"tokens must not be empty"):
        Vocabulary(())
    with pytest.raises(ValueError, match=r"tokens must be distinct"):
        Vocabulary(("a", "b", "a"))
    with pytest.raises(ValueError, match=r"'tokens' list"):
        Vocabulary.from_json({"tokens": "abc"})
    with pytest.raises(ValueError, match=r"'tokens' list"):
        Vocabulary.from_json(["a", "b"])
    with pytest.raises(ValueError, match=r"tokens must be strings"):
        Vocabulary.from_json({"tokens": ["a", 1]})
    assert Vocabulary.from_json({"tokens": ["a", "b"]}).level == "char"


# -- corpus --------------------------------------------------------------------------------


def test_default_corpus_is_the_stdlib_and_deterministic():
    a = read_corpus()
    b = read_corpus(None)
    c = read_corpus([])
    assert a == b == c
    assert len(a.text) > 100_000
    assert "def " in a.text and "import " in a.text
    files = default_corpus_files()
    assert a.files == tuple(str(f) for f in files)
    assert list(a.files) == sorted(a.files) and all(f.endswith(".py") for f in a.files)
    first = files[0].read_text(encoding="utf-8")
    assert a.text.startswith(first + "\n")


def test_user_file(tmp_path):
    f = tmp_path / "t.txt"
    f.write_text("naïve ✓\nsecond line\n", encoding="utf-8")
    c = read_corpus([f])
    assert c.text == "naïve ✓\nsecond line\n"
    assert c.files == (str(f),)
    assert read_corpus([str(f)]) == c  # str paths


def _tree(root):
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / ".git").mkdir()
    (root / "zz_empty_dir").mkdir()
    (root / "b.txt").write_text("bee", encoding="utf-8")
    (root / "a.txt").write_text("ay", encoding="utf-8")
    (root / "sub" / "c.md").write_text("sea ✓", encoding="utf-8")
    (root / "sub" / "deeper" / "d.py").write_text("dee", encoding="utf-8")
    (root / ".hidden.txt").write_text("HIDDEN", encoding="utf-8")
    (root / ".git" / "config").write_text("GIT", encoding="utf-8")
    (root / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    (root / "latin1.txt").write_bytes("café".encode("latin-1"))
    (root / "empty.txt").write_bytes(b"")


def test_folder_is_read_recursively_sorted_skipping_hidden_and_non_text(tmp_path):
    _tree(tmp_path)
    c = read_corpus([tmp_path])
    assert c.text == "ay\nbee\nsea ✓\ndee"
    assert c.files == tuple(str(tmp_path / p) for p in ("a.txt", "b.txt", "sub/c.md", "sub/deeper/d.py"))
    assert read_corpus([tmp_path]) == c  # deterministic


def test_several_paths_in_the_given_order(tmp_path):
    _tree(tmp_path / "tree")
    f = tmp_path / "first.txt"
    f.write_text("FIRST", encoding="utf-8")
    c = read_corpus([f, tmp_path / "tree" / "sub"])
    assert c.text == "FIRST\nsea ✓\ndee"
    assert c.files[0] == str(f) and len(c.files) == 3


@pytest.mark.parametrize(
    "data, byte, offset",
    [
        (b"hello w\xffrld", 0xFF, 7),
        ("déjà vu ".encode() + b"\xc3(", 0xC3, len("déjà vu ".encode())),  # bad continuation byte
        ("ok ✓ ".encode() + "café".encode("latin-1"), 0xE9, len("ok ✓ caf".encode())),  # byte, not char offset
        (b"truncated \xe2\x9c", 0xE2, 10),  # cut inside a multi-byte character
        (b"\x80leading", 0x80, 0),
    ],
)
def test_non_utf8_file_names_file_and_byte_offset(tmp_path, data, byte, offset):
    f = tmp_path / "bad.txt"
    f.write_bytes(data)
    with pytest.raises(
        CorpusError, match=rf"bad\.txt: not UTF-8 text \(invalid byte 0x{byte:02x} at offset {offset}\)"
    ):
        read_corpus([f])


def test_binary_file_names_nul_offset(tmp_path):
    f = tmp_path / "prog.bin"
    f.write_bytes(b"ELF..." + b"\x00" + b"\xff\xfe rest")
    with pytest.raises(CorpusError, match=r"prog\.bin: looks binary \(NUL byte at offset 6\)"):
        read_corpus([f])


def test_empty_file(tmp_path):
    f = tmp_path / "empty.txt"
    f.write_bytes(b"")
    with pytest.raises(CorpusError, match=r"empty\.txt: file is empty"):
        read_corpus([f])


def test_folder_without_text(tmp_path):
    d = tmp_path / "data"
    d.mkdir()
    with pytest.raises(CorpusError, match=r"data: folder holds no non-empty UTF-8 text files"):
        read_corpus([d])
    (d / ".hidden.txt").write_text("hidden", encoding="utf-8")
    (d / "x.bin").write_bytes(b"\x00\x01")
    (d / "latin.txt").write_bytes(b"caf\xe9")
    (d / "empty.txt").write_bytes(b"")
    with pytest.raises(CorpusError, match=r"data: folder holds no non-empty UTF-8 text files"):
        read_corpus([d])


def test_missing_path(tmp_path):
    with pytest.raises(CorpusError, match=r"nothing\.txt: no such file or folder"):
        read_corpus([tmp_path / "nothing.txt"])
    good = tmp_path / "good.txt"
    good.write_text("fine", encoding="utf-8")
    with pytest.raises(CorpusError, match=r"nothing\.txt: no such file or folder"):
        read_corpus([good, tmp_path / "nothing.txt"])


def test_broken_and_looping_links_and_paths_under_a_file(tmp_path):
    (tmp_path / "broken").symlink_to(tmp_path / "gone")
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    (tmp_path / "f.txt").write_text("text", encoding="utf-8")
    for name in ("broken", "loop"):
        with pytest.raises(CorpusError, match=rf"{name}: broken or looping symbolic link$"):
            read_corpus([tmp_path / name])
    with pytest.raises(CorpusError, match=r"f\.txt/x: no such file or folder$"):
        read_corpus([tmp_path / "f.txt" / "x"])
    assert read_corpus([tmp_path]).files == (str(tmp_path / "f.txt"),)  # inside a folder: skipped


def test_corpus_error_is_a_value_error():
    assert issubclass(CorpusError, ValueError)


# -- unreadable files and folders (issue 17.5: refused, named; never skipped silently) -----------


def _deny(path: Path, monkeypatch) -> None:
    """Make ``path`` unreadable: chmod when that means something (not root), else make opening it fail.

    Root ignores permission bits, so there the open (a file) or the listing (a folder) raises the
    ``PermissionError`` the kernel would give anyone else.
    """
    if os.geteuid() != 0:
        path.chmod(0)
        return
    denied = str(path)
    if path.is_dir():
        real_scandir = os.scandir

        def scandir(p="."):
            if os.fspath(p) == denied:
                raise PermissionError(13, "Permission denied", denied)
            return real_scandir(p)

        monkeypatch.setattr(os, "scandir", scandir)
    else:
        real_open = Path.open

        def open_(self, *args, **kwargs):
            if str(self) == denied:
                raise PermissionError(13, "Permission denied", denied)
            return real_open(self, *args, **kwargs)

        monkeypatch.setattr(Path, "open", open_)


@pytest.fixture
def restore_modes():
    touched: list[Path] = []
    yield touched
    for p in reversed(touched):  # a folder before what it holds
        p.chmod(0o755)  # let tmp_path be cleaned up


def test_unreadable_file_in_a_folder_is_named_not_skipped(tmp_path, monkeypatch, restore_modes, capsys):
    d = tmp_path / "data"
    d.mkdir()
    (d / "a.txt").write_text("readable text " * 50, encoding="utf-8")
    secret = d / "b.txt"
    secret.write_text("secret text " * 50, encoding="utf-8")
    restore_modes.append(secret)
    _deny(secret, monkeypatch)
    with pytest.raises(
        CorpusError, match=rf"^{secret}: cannot read \(Permission denied\); make it readable or leave it"
    ):
        read_corpus([d])
    with pytest.raises(CorpusError, match=rf"^{secret}: cannot read \(Permission denied\)"):
        read_corpus([secret])  # named directly
    code = main(["train", str(d), "--steps", "1", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and f"{secret}: cannot read (Permission denied)" in err


def test_unreadable_folder_is_named(tmp_path, monkeypatch, restore_modes, capsys):
    top = tmp_path / "data"
    sub = top / "sub"
    sub.mkdir(parents=True)
    (top / "a.txt").write_text("readable text", encoding="utf-8")
    (sub / "b.txt").write_text("hidden away", encoding="utf-8")
    restore_modes.append(sub)
    _deny(sub, monkeypatch)
    with pytest.raises(CorpusError, match=rf"^{sub}: cannot read \(Permission denied\)"):
        read_corpus([top])  # a subfolder
    restore_modes.append(top)
    _deny(top, monkeypatch)
    with pytest.raises(CorpusError, match=rf"^{top}: cannot read \(Permission denied\)"):
        read_corpus([top])  # the folder named (was: "folder holds no non-empty UTF-8 text files")
    code = main(["train", str(top), "--steps", "1", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and f"{top}: cannot read (Permission denied)" in err


# -- reading and encoding in chunks (issue 17.6) -------------------------------------------------

MIXED = "naïve café, déjà-vu 🐍 the cat's  x_1 42 — \t\n日本語 a.b!! \r\n\u00a0\u2028 end"


def _chunked(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7, 64])
def test_word_chunks_cut_exactly_as_the_whole_text(size):
    text = MIXED * 3 + "x" * 150 + " " * 70 + "..!" + "y" * 40  # runs across many chunks
    tokens = [t for piece in word_chunks(_chunked(text, size)) for t in piece]
    assert tokens == tokenize_words(text)
    assert list(word_chunks([])) == [] and list(word_chunks(["", ""])) == []


@pytest.mark.parametrize("level, max_size", [("char", None), ("word", None), ("word", 6)])
@pytest.mark.parametrize("size", [1, 4, 13])
def test_chunked_vocabulary_and_ids_equal_the_whole_texts(level, max_size, size):
    text = MIXED * 4
    whole = Vocabulary.build([text], level, max_size)
    v = Vocabulary.build_from_chunks(_chunked(text, size), level, max_size)
    assert v == whole
    ids = np.concatenate(list(v.encode_chunks(_chunked(text, size), strict=False)))
    assert ids.dtype == np.uint8 and (ids == whole.encode(text, strict=False)).all()
    if level == "char":
        assert v.tokens == tuple(sorted(set(text)))


def test_id_dtype_is_the_smallest_unsigned_that_holds_every_id():
    for n, dtype in [(1, np.uint8), (256, np.uint8), (257, np.uint16), (65536, np.uint16), (65537, np.uint32)]:
        v = Vocabulary(tuple(f"w{i}" for i in range(n)), "word")
        assert v.id_dtype == dtype
    big = Vocabulary(tuple(chr(0x4E00 + i) for i in range(300)))
    text = "".join(big.tokens) * 2
    ids = np.concatenate(list(big.encode_chunks(_chunked(text, 7))))
    assert ids.dtype == np.uint16 and ids.max() == 299 and big.decode(ids) == text


def test_chunked_encode_names_every_unknown_unit_across_chunks():
    v = Vocabulary.build(["abc "])
    with pytest.raises(ValueError, match=r"^text has 3 chars outside the vocabulary: 'x', 'é', '🐍'$"):
        list(v.encode_chunks(["ab", "cx", "a", "é", "xxb🐍", "c"]))
    w = Vocabulary(("a", " ", "b"), "word")
    with pytest.raises(ValueError, match=r"^text has 2 words outside the vocabulary: 'zeb', 'yak'$"):
        list(w.encode_chunks(["a z", "eb b y", "ak a"]))


def test_corpus_is_read_in_chunks_with_file_offsets(tmp_path, monkeypatch):
    import bptt.text.corpus as corpus_module

    monkeypatch.setattr(corpus_module, "CHUNK_BYTES", 3)  # every multi-byte character straddles a read
    f = tmp_path / "t.txt"
    f.write_text(MIXED, encoding="utf-8")
    c = read_corpus([f])
    assert c == Corpus((str(f),), len(MIXED.encode()))
    assert "".join(c.chunks(3)) == c.text == MIXED
    bad = tmp_path / "bad.txt"
    bad.write_bytes("déjà vu ✓ ".encode() + b"ok \xe2\x9c")  # cut inside the last character
    with pytest.raises(
        CorpusError, match=rf"bad\.txt: not UTF-8 text \(invalid byte 0xe2 at offset {len('déjà vu ✓ '.encode()) + 3}\)"
    ):
        read_corpus([bad])
    late = tmp_path / "late.bin"
    late.write_bytes(b"x" * 20_000 + b"\x00")
    with pytest.raises(CorpusError, match=r"late\.bin: looks binary \(NUL byte at offset 20000\)"):
        read_corpus([late])


def test_encode_corpus_gives_compact_ids_and_the_int32_digest(tmp_path):
    import hashlib

    (tmp_path / "a.txt").write_text(MIXED, encoding="utf-8")
    (tmp_path / "b.txt").write_text("more text ✓", encoding="utf-8")
    corpus = read_corpus([tmp_path])
    for level in ("char", "word"):
        vocab = Vocabulary.build_from_chunks(corpus.chunks(5), level)
        ids, digest = encode_corpus(corpus, vocab)
        want = vocab.encode(MIXED + "\n" + "more text ✓")
        assert ids.dtype == np.uint8 and (ids == want).all()
        assert digest == hashlib.sha256(want.astype(np.int32).tobytes()).hexdigest()  # as before compact ids


def test_a_file_that_grows_after_the_check_is_refused(tmp_path):
    f = tmp_path / "t.txt"
    f.write_text("abc", encoding="utf-8")
    corpus = read_corpus([f])
    f.write_text("abcabc", encoding="utf-8")
    with pytest.raises(
        CorpusError, match=r"t\.txt: the text changed while being read \(more than the 3 bytes checked\)"
    ):
        encode_corpus(corpus, Vocabulary.build(["abc"]))


def test_prepare_data_keeps_one_byte_per_character(tmp_path):
    f = tmp_path / "t.txt"
    f.write_text("the quick brown fox jumps over the lazy dog\n" * 200, encoding="utf-8")
    data = prepare_data([f], TrainConfig(batch_size=4, seq_len=8))
    assert data.train.dtype == data.val.dtype == np.uint8
    assert data.train.base is data.val.base  # views of one array: no copy per split


# -- sampling ------------------------------------------------------------------------------

CHARS = "abcdefgh "


@pytest.fixture(scope="module")
def lm():
    vocab = Vocabulary.build([CHARS])
    m = bptt.LSTM(len(vocab), 12, len(vocab), seed=4)
    # a few Adam steps on a repeating pattern, so the distributions are not near-uniform
    ids = vocab.encode("abc defg habc defg h" * 3)
    x, y = ids[:-1, None], ids[1:, None]
    opt = Adam(m.params, lr=0.05)
    for _ in range(15):
        opt.step(m.loss_and_grad(x, y).grads)
    return m, vocab


def _greedy_reference(m, vocab, prime, n):
    """Argmax chain, re-running the whole sequence each time (no carried state)."""
    ids = list(vocab.encode(prime))
    out = []
    for _ in range(n):
        p = m.forward(np.array(ids)[:, None]).outputs[-1, 0]
        tok = int(np.argmax(p))
        out.append(vocab.tokens[tok])
        ids.append(tok)
    return "".join(out)


def test_greedy_is_the_argmax_chain(lm):
    m, vocab = lm
    for prime in ("a", "abc d", "hhh"):
        got = list(sample_text(m, vocab, prime, 25, greedy=True))
        assert len(got) == 25 and all(t in vocab.tokens for t in got)
        assert "".join(got) == _greedy_reference(m, vocab, prime, 25)


def test_top_k_one_is_greedy(lm):
    m, vocab = lm
    greedy = "".join(sample_text(m, vocab, "ab", 30, greedy=True))
    for seed in (0, 1):
        for temperature in (1.0, 3.0):
            got = "".join(sample_text(m, vocab, "ab", 30, top_k=1, temperature=temperature, seed=seed))
            assert got == greedy


def test_same_seed_same_text(lm):
    m, vocab = lm
    a = "".join(sample_text(m, vocab, "abc", 60, seed=7))
    b = "".join(sample_text(m, vocab, "abc", 60, seed=7))
    c = "".join(sample_text(m, vocab, "abc", 60, seed=8))
    d = "".join(sample_text(m, vocab, "abc", 60, seed=np.random.default_rng(7)))
    assert a == b == d
    assert a != c


def test_sampling_follows_the_model_distribution(lm):
    # The first sampled token is drawn from p(. | prime): compare frequencies over many seeds.
    m, vocab = lm
    p = m.forward(vocab.encode("abc d")[:, None]).outputs[-1, 0]
    rng = np.random.default_rng(0)
    n = 3000
    counts = Counter(next_token(_logits(p), rng) for _ in range(n))
    for tok in range(len(vocab)):
        expected = n * p[tok]
        assert abs(counts[tok] - expected) <= 5 * math.sqrt(expected + 1), (tok, counts[tok], expected)


P = np.array([0.05, 0.4, 0.1, 0.3, 0.15])  # ranked: 1 (.4), 3 (.3), 4 (.15), 2 (.1), 0 (.05)


def _draws(n=3000, seed=0, **kw):
    rng = np.random.default_rng(seed)
    return Counter(next_token(_logits(P), rng, **kw) for _ in range(n))


@pytest.mark.parametrize("k, allowed", [(1, {1}), (2, {1, 3}), (3, {1, 3, 4}), (5, {0, 1, 2, 3, 4})])
def test_top_k_only_emits_the_k_most_likely(k, allowed):
    counts = _draws(top_k=k)
    assert set(counts) == allowed
    kept = P[sorted(allowed)].sum()
    for tok in allowed:  # renormalised within the kept set
        expected = 3000 * P[tok] / kept
        assert abs(counts[tok] - expected) <= 5 * math.sqrt(expected + 1)


@pytest.mark.parametrize(
    "top_p, nucleus",
    [(0.2, {1}), (0.39, {1}), (0.41, {1, 3}), (0.69, {1, 3}), (0.71, {1, 3, 4}), (0.9, {1, 3, 4, 2}), (1.0, None)],
)
def test_top_p_keeps_the_smallest_nucleus(top_p, nucleus):
    nucleus = nucleus or set(range(P.size))
    counts = _draws(top_p=top_p)
    assert set(counts) == nucleus
    mass = P[sorted(nucleus)].sum()
    for tok in nucleus:
        expected = 3000 * P[tok] / mass
        assert abs(counts[tok] - expected) <= 5 * math.sqrt(expected + 1)


def test_temperature_is_applied_before_the_filters():
    p = np.array([0.6, 0.3, 0.1])
    # at T=1 the 0.65 nucleus is {0, 1}; at T=0.5, q ∝ p² = (.78, .20, .02) and it is {0}
    rng = np.random.default_rng(0)
    assert {next_token(_logits(p), rng, top_p=0.65) for _ in range(400)} == {0, 1}
    assert {next_token(_logits(p), rng, temperature=0.5, top_p=0.65) for _ in range(400)} == {0}
    # a high temperature flattens: the rare token becomes common
    hot = Counter(next_token(_logits(p), rng, temperature=50.0) for _ in range(3000))
    assert hot[2] > 800
    cold = Counter(next_token(_logits(p), rng, temperature=0.01) for _ in range(300))
    assert cold == {0: 300}


def test_next_token_greedy_and_zero_probabilities():
    rng = np.random.default_rng(0)
    p = np.array([0.0, 0.7, 0.0, 0.3], dtype=np.float32)
    assert next_token(_logits(p), rng, greedy=True) == 1
    assert {next_token(_logits(p), rng) for _ in range(300)} == {1, 3}
    assert {next_token(_logits(p), rng, top_k=3) for _ in range(300)} == {1, 3}


@pytest.mark.parametrize(
    "kwargs, pattern",
    [
        (dict(temperature=0.0), r"temperature must be a finite number > 0 \(use greedy for the most likely token\)"),
        (dict(temperature=-1.0), r"temperature must be a finite number > 0 \(use greedy for the most likely token\)"),
        (dict(temperature=float("nan")), r"temperature must be a finite number > 0"),
        (dict(top_k=0), r"top_k must be an integer in \[1, 9\] \(the vocabulary size\), got 0"),
        (dict(top_k=10), r"top_k must be an integer in \[1, 9\] \(the vocabulary size\), got 10"),
        (dict(top_k=2.0), r"top_k must be an integer"),
        (dict(top_p=0.0), r"top_p must be a finite number in \(0, 1\], got 0.0"),
        (dict(top_p=1.5), r"top_p must be a finite number in \(0, 1\], got 1.5"),
        (dict(top_p=-0.2), r"top_p must be a finite number in \(0, 1\]"),
        (dict(top_p=float("nan")), r"top_p must be a finite number in \(0, 1\]"),
        (dict(prime=""), r"prime must be a non-empty string"),
        (dict(n=0), r"length must be a positive integer, got 0"),
    ],
)
def test_sampling_argument_errors(lm, kwargs, pattern):
    m, vocab = lm
    args = dict(prime="ab", n=5) | kwargs
    prime, n = args.pop("prime"), args.pop("n")
    with pytest.raises(ValueError, match=pattern):
        list(sample_text(m, vocab, prime, n, **args))


def test_prime_outside_the_vocabulary_names_the_characters(lm):
    m, vocab = lm
    with pytest.raises(ValueError, match=r"prime has 2 chars outside the model's vocabulary: 'z', 'Q'") as info:
        list(sample_text(m, vocab, "abzcQz", 5))
    assert not isinstance(info.value, KeyError)


def test_model_and_vocabulary_must_match(lm):
    m, _ = lm
    with pytest.raises(ValueError, match=r"model has 9 inputs / 9 outputs,? but the vocabulary has 3 tokens"):
        list(sample_text(m, Vocabulary(("a", "b", "c")), "ab", 5))


def test_word_level_prime_with_unknown_words_warns_and_uses_unk():
    text = "the cat sat on the mat . the dog sat on the cat ."
    vocab = Vocabulary.build([text], level="word", max_size=9)
    m = bptt.Elman(len(vocab), 10, len(vocab), seed=2)
    prime = "the zebra sat on the yak"
    assert vocab.unknown(prime)  # at least "zebra" and "yak" are unknown
    with pytest.warns(UserWarning, match=r"prime words not in the vocabulary are read as <unk>: .*'zebra'.*'yak'"):
        got = list(sample_text(m, vocab, prime, 8, greedy=True))
    # same as feeding <unk> ids ourselves
    ids = list(vocab.encode(prime, strict=False))
    assert ids.count(vocab.tokens.index(UNK)) >= 2
    want = []
    for _ in range(8):
        tok = int(np.argmax(m.forward(np.array(ids)[:, None]).outputs[-1, 0]))
        want.append(vocab.tokens[tok])
        ids.append(tok)
    assert got == want
    # a known prime does not warn
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        list(sample_text(m, vocab, "the cat", 3, seed=0))


def test_word_level_without_unk_refuses_unknown_words():
    vocab = Vocabulary(("a", " ", "b"), "word")
    m = bptt.Elman(3, 4, 3, seed=0)
    with pytest.raises(ValueError, match=r"prime has 1 words outside the model's vocabulary: 'zebra'"):
        list(sample_text(m, vocab, "a zebra", 3))


@pytest.mark.parametrize(
    "tokens, level, want",
    [(("a", "b", " "), "char", " "), (("x", "\n"), "char", "\n"), (("<unk>", "the", "cat"), "word", "the")],
)
def test_default_prime_is_a_newline_a_space_or_a_token(tokens, level, want):
    assert default_prime(Vocabulary(tokens, level)) == want


@pytest.mark.parametrize("tokens, level", [(("<unk>",), "word"), (("ab", "cd"), "char"), (("", "x y"), "word")])
def test_no_default_prime_is_a_value_error_that_asks_for_one(tokens, level, tmp_path, capsys):
    vocab = Vocabulary(tokens, level)
    with pytest.raises(
        ValueError, match=r"^default_prime: none of the \d tokens of this \w+ vocabulary .* pass a prime"
    ):
        default_prime(vocab)  # was StopIteration
    path = tmp_path / "odd.safetensors"
    save_checkpoint(
        path, Checkpoint(model=bptt.Elman(len(vocab), 3, len(vocab), output="softmax", seed=0), vocab=vocab)
    )
    code = main(["sample", str(path), "-n", "5"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "pass a prime (bptt sample --prime TEXT)" in err
