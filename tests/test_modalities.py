import dataclasses

import pytest
import torch

from omnisep import modalities
from omnisep.api import Query
from omnisep.encoders.toy import ToyEncoder
from omnisep.errors import OmniSepError


def test_every_modality_is_a_query_field_and_an_encoder_method():
    fields = {field.name for field in dataclasses.fields(Query)}
    for modality in modalities.ALL:
        assert modality.name in fields and modality.negative_keyword in fields
        assert hasattr(ToyEncoder, f"_embed_{modality.name}") and hasattr(ToyEncoder, f"_prepare_{modality.name}")


def test_query_parts_follow_the_table_order():
    query = Query(audio=["a.wav"], text="dog", image="dog.png", negative_audio="b.wav", negative_text="speech")
    assert [kind for kind, _ in query.parts()] == list(modalities.MODALITIES)
    assert [kind for kind, _ in query.negative_parts()] == ["text", "audio"]


def test_embed_by_modality_equals_the_named_methods():
    encoder = ToyEncoder(dim=16)
    assert torch.equal(encoder.embed("text", ["dog barking"]), encoder.embed_text(["dog barking"]))
    clip = torch.linspace(-0.5, 0.5, 16000).numpy()
    assert torch.equal(encoder.embed("audio", [clip], 16000), encoder.embed_audio([clip], sample_rate=16000))
    with pytest.raises(OmniSepError, match="Unknown modality smell: choose from text, image, audio"):
        encoder.embed("smell", ["x"])


def test_check_orders_and_refuses():
    assert modalities.check(["audio", "text"]) == ("text", "audio")
    with pytest.raises(OmniSepError, match="none given"):
        modalities.check([])
