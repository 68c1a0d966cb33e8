"""What the sentence encoder sees: the parsed reasoning chain, and the whole completion with `pooling="windows"`."""

import pytest
import torch

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
