"""The nano model's captions (prompt form), vocabulary check and frozen text encoders."""

from __future__ import annotations

import pytest
import torch

from hyvideo.data.synthetic.attributes import load_nano_config
from hyvideo.data.synthetic.captions import prompt_for, structured_caption
from hyvideo.data.synthetic.sampling import eval_spec
from hyvideo.data.synthetic.vocab import caption_corpus, caption_triple, training_caption, unknown_words, vocabulary


def test_training_caption_is_the_prompt_plus_camera_and_photo_background():
    spec = eval_spec(("red", "circle", "left"), seed=3)
    assert training_caption(structured_caption(spec)) == prompt_for(("red", "circle", "left")) + "."
    moved = {**structured_caption(spec), "camera_movement": "pan left",
             "background": "a dimmed still photograph of city street"}
    assert training_caption(moved) == "a red circle moves to the left. the camera pans left. on a photograph of city street."
    assert training_caption("already text") == "already text"
    with pytest.raises(KeyError):
        training_caption({"background": "x"})


def test_caption_triple_reads_one_object_bare_prompts_only():
    assert caption_triple("a red circle moves to the left.") == ("red", "circle", "left")
    assert caption_triple("an orange star grows") is None  # not a nano colour
    assert caption_triple("a white cross rotates") == ("white", "cross", "rotate")
    for other in ("a red circle moves to the left. the camera pans left.", "a red star moves to the right and a "
                  "green circle shrinks.", "a red circle moves to the left. on a photograph of city street.",
                  "an red circle grows", "an astronaut rides a horse", ""):
        assert caption_triple(other) is None, other


def test_vocabulary_covers_every_caption_and_flags_other_words():
    vocab = vocabulary()
    cfg = load_nano_config()
    for word in [*cfg.colours, *cfg.shapes, "moves", "left", "camera", "photograph"]:
        assert word in vocab
    assert all(not unknown_words(line, vocab) for line in caption_corpus())
    assert unknown_words("An astronaut rides a red horse, astronaut!", vocab) == ["an", "astronaut", "rides", "horse"]


@pytest.fixture(scope="module")
def nano_text(tmp_path_factory):
    from hyvideo.data.synthetic.text_models import save_nano_text_encoders

    return save_nano_text_encoders(tmp_path_factory.mktemp("nano_text"))


def test_text_encoders_load_in_the_official_layout_one_token_per_word(nano_text):
    from hyvideo.checkpoint.text import load_clip_text_encoder, load_llm_text_encoder

    llm = load_llm_text_encoder(nano_text, dtype=torch.float32, text_len=32)
    clip = load_clip_text_encoder(nano_text, dtype=torch.float32)
    for word in vocabulary():
        assert len(llm.tokenizer(" " + word, add_special_tokens=False)["input_ids"]) == 1, word
        assert len(clip.tokenizer(word, add_special_tokens=False)["input_ids"]) == 1, word
    prompts = ["a red circle moves to the left", "a blue circle moves to the left", "a red square moves to the left"]
    states, mask = llm(prompts, 17)
    assert states.shape == (3, 32, 64) and mask.sum(1).tolist() == [8, 8, 8]
    cos = torch.nn.functional.cosine_similarity
    assert cos(states[0, 1], states[1, 1], dim=0) < 0.5  # "red" vs "blue": distinct states
    assert cos(states[0, 2], states[2, 2], dim=0) < 0.5  # "circle" vs "square"
    assert 0.5 < states.std() < 2  # unit-scale states (unit-gain init), not the 0.02-std of a default init
    pooled = clip(prompts)
    assert pooled.shape == (3, 64) and not torch.allclose(pooled[0], pooled[1])
