import pytest
import torch
from torch import nn

from embodia.cerebellum.backbone import EncoderLayer
from embodia.cerebellum.config import PolicyConfig
from embodia.cerebellum.heads.decoder import DecoderBlock, drop_path


def test_drop_path_zeroes_whole_samples_and_keeps_the_mean():
    torch.manual_seed(0)
    x = torch.ones(4000, 3, 8)
    y = drop_path(x, 0.25, training=True)
    per_sample = y[:, 0, 0]
    assert set(per_sample.unique().tolist()) <= {0.0, float(torch.tensor(1 / 0.75))}
    assert torch.equal(y, per_sample[:, None, None].expand_as(y))  # one draw per sample
    assert abs(float((per_sample == 0).float().mean()) - 0.25) < 0.03
    assert abs(float(y.mean()) - 1.0) < 0.05
    assert drop_path(x, 0.25, training=False) is x


def test_encoder_layer_is_torchs_layer_at_inference_and_random_in_training():
    cfg = PolicyConfig(d_model=32, n_heads=4, drop_path=0.5)
    ours = EncoderLayer(cfg)
    ref = nn.TransformerEncoderLayer(32, 4, cfg.ff_mult * 32, 0.0, batch_first=True, norm_first=True)
    assert ours.state_dict().keys() == ref.state_dict().keys()  # old checkpoints still load
    ref.load_state_dict(ours.state_dict())
    x = torch.randn(8, 5, 32)
    ours.eval(), ref.eval()
    assert torch.allclose(ours(x), ref(x), atol=1e-6)
    ours.train()
    assert not torch.equal(ours(x), ours(x))
    ours.drop_path = 0.0  # training without stochastic depth: exactly torch's training forward
    ref.train()
    assert torch.allclose(ours(x), ref(x), atol=1e-6)


def test_decoder_block_drops_branches_only_in_training():
    block = DecoderBlock(32, 4, 64, dropout=0.0, drop_path=0.5)
    x, memory = torch.randn(8, 4, 32), torch.randn(8, 6, 32)
    block.train()
    mem = block.memory_kv(memory)
    assert not torch.equal(block(x, mem, causal=False), block(x, mem, causal=False))
    block.eval()
    assert torch.equal(block(x, mem, causal=False), block(x, mem, causal=False))


def test_config_rejects_drop_path_of_one():
    with pytest.raises(ValueError, match="drop_path"):
        PolicyConfig(drop_path=1.0)
