"""The losses of SpeechMapper's two training stages (the heart of the method)."""

from __future__ import annotations

from speechmapper_plugin.losses.ctc import ctc_head_loss as ctc_head_loss
from speechmapper_plugin.losses.ctc import embedding_ctc_loss as embedding_ctc_loss
from speechmapper_plugin.losses.embedding_mse import (
    EmbeddingMSELoss as EmbeddingMSELoss,
)
from speechmapper_plugin.losses.embedding_mse import (
    UntrainableRowsError as UntrainableRowsError,
)
from speechmapper_plugin.losses.embedding_mse import build_targets as build_targets
from speechmapper_plugin.losses.embedding_mse import check_alpha as check_alpha
from speechmapper_plugin.losses.embedding_mse import (
    embedding_mse_loss as embedding_mse_loss,
)
from speechmapper_plugin.losses.embedding_mse import position_masks as position_masks
from speechmapper_plugin.losses.embedding_mse import trainable_rows as trainable_rows
from speechmapper_plugin.losses.embedding_mse import (
    transcript_mse_loss as transcript_mse_loss,
)
from speechmapper_plugin.losses.mixed import check_sigma as check_sigma
from speechmapper_plugin.losses.mixed import mixed_ce_mse_loss as mixed_ce_mse_loss
from speechmapper_plugin.losses.mixed import uses_ce as uses_ce
from speechmapper_plugin.losses.mixed import uses_mse as uses_mse
from speechmapper_plugin.losses.quantity import (
    cif_quantity_loss as cif_quantity_loss,
)
from speechmapper_plugin.losses.stage1 import Stage1Loss as Stage1Loss
from speechmapper_plugin.losses.stage1 import Stage1Weights as Stage1Weights
from speechmapper_plugin.losses.stage1 import stage1_loss as stage1_loss
from speechmapper_plugin.losses.stage2 import stage2_loss as stage2_loss
