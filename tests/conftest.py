"""Shared fixtures: a tiny random encoder and tokenizer built here (no network, no packaged
model), untrained QualityModels on it, and small synthetic transcripts."""

from __future__ import annotations

import importlib.util
import string
import sys
import warnings
from pathlib import Path

import pytest
import torch

WORDS = (
    "hi hello thanks thank you my order card charged twice refund please help sorry "
    "about that i have the it is was not working still again same problem can speak "
    "to a human agent manager this ridiculous fixed great works now password reset "
    "link sent email account locked wait minutes understand frustrating how feel "
    "customer assistant user what did happen when yes no ok : , . ! ?"
).split()


def load_benchmark(name: str):
    """A module of benchmarks/ (not a package), imported once by its file path."""
    key = f"{name}_benchmark"
    if key not in sys.modules:
        path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
        spec = importlib.util.spec_from_file_location(key, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[key] = module  # dataclasses look their module up while being built
        spec.loader.exec_module(module)
    return sys.modules[key]


def build_tiny_encoder(directory) -> str:
    """A 2-layer, 32-dim BERT with a WordPiece tokenizer over a small vocabulary."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    letters = list(string.ascii_lowercase + string.digits)
    vocab_list = specials + sorted(set(WORDS)) + letters + ["##" + c for c in letters]
    vocab = {w: i for i, w in enumerate(dict.fromkeys(vocab_list))}
    backend = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    backend.normalizer = normalizers.BertNormalizer(lowercase=True)
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
        sep_token="[SEP]", mask_token="[MASK]", model_input_names=["input_ids", "token_type_ids", "attention_mask"])
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=4, intermediate_size=64, max_position_embeddings=256)
    BertModel(config).save_pretrained(str(directory))
    tokenizer.save_pretrained(str(directory))
    return str(directory)


@pytest.fixture(scope="session")
def tiny_encoder_dir(tmp_path_factory) -> str:
    return build_tiny_encoder(tmp_path_factory.mktemp("tiny-encoder"))


def make_tiny_model(encoder_dir: str, seed: int = 0, **config):
    from qualaudit.model import QualityModel, UntrainedModelWarning

    torch.manual_seed(seed)
    config.setdefault("max_turn_tokens", 48)
    config.setdefault("max_context_tokens", 24)
    config.setdefault("conversation_dim", 16)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UntrainedModelWarning)
        return QualityModel.from_encoder(encoder_dir, **config).eval()


@pytest.fixture(scope="session")
def tiny_model(tiny_encoder_dir):
    return make_tiny_model(tiny_encoder_dir)


@pytest.fixture(scope="session")
def tiny_model_dir(tiny_model, tmp_path_factory):
    return tiny_model.save_pretrained(tmp_path_factory.mktemp("tiny-model"))


def conversation(tid: str, *pairs: tuple[str, str], agent_type: str = "ai", **extra) -> dict:
    """A JSONL-shaped transcript dict from (role, text) pairs."""
    return {"id": tid, "agent_type": agent_type,
            "messages": [{"role": r, "content": t} for r, t in pairs], **extra}


@pytest.fixture
def toy_transcripts() -> list[dict]:
    return [
        conversation("t1", ("user", "my card was charged twice"),
                     ("assistant", "sorry about that, refund sent"),
                     ("user", "thanks it works now")),
        conversation("t2", ("user", "password reset link not working"),
                     ("assistant", "i sent the link again"),
                     ("user", "still not working, same problem"),
                     ("assistant", "i sent the link again"),
                     ("user", "can i speak to a human agent please"), agent_type="ai"),
        conversation("t3", ("customer", "account locked"), agent_type="human"),
        conversation("t4", ("agent", "hello how can i help"), ("customer", "order not working"),
                     ("agent", "i understand how frustrating this is, what did happen"),
                     agent_type="human", channel="chat", team="blue"),
    ]
