"""A real optimisation smoke test: the tiny projector learns random targets."""

from __future__ import annotations

import torch
from fairseq2.nn import BatchLayout

from speechmapper_plugin.losses import embedding_mse_loss
from speechmapper_plugin.models.speechmapper import get_speechmapper_model_hub


def test_tiny_projector_drives_stage1_loss_down_tenfold() -> None:
    torch.manual_seed(0)
    hub = get_speechmapper_model_hub()
    config = hub.get_arch_config("tiny")
    model = hub.create_new_model(config, device=torch.device("cpu"))
    model.train()

    # Four "utterances" of SFM features and transcripts drawn from a random
    # 50-token embedding table, as stage 1 sees them.
    lengths = [180, 150, 120, 96]
    features = torch.randn(4, max(lengths), config.input_dim)
    layout = BatchLayout.of(features, lengths)
    out_lens = model.output_lengths(torch.tensor(lengths))

    table = torch.randn(50, config.output_dim)
    pad_embed = table[0]
    target_lens = out_lens - 3
    token_ids = torch.randint(1, 50, (4, int(target_lens.max())))
    target_embeds = table[token_ids]

    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)

    losses = []
    for _ in range(200):
        outputs, out_layout = model(features, layout)
        loss = embedding_mse_loss(
            outputs,
            out_layout.seq_lens_pt,
            target_embeds,
            target_lens,
            pad_embed,
            alpha=9.0,
        )
        optimizer.zero_grad()
        loss.total.backward()
        optimizer.step()
        losses.append(loss.total.item())

    assert losses[-1] * 10 <= losses[0], (losses[0], losses[-1])
