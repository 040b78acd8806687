"""The on-disk store of precomputed speech-encoder features (see ``layout.py``)."""

from __future__ import annotations

from speechmapper_plugin.data.feature_store.errors import (
    CorruptShardError as CorruptShardError,
)
from speechmapper_plugin.data.feature_store.errors import (
    FeatureStoreError as FeatureStoreError,
)
from speechmapper_plugin.data.feature_store.errors import (
    IncompleteStoreError as IncompleteStoreError,
)
from speechmapper_plugin.data.feature_store.errors import (
    StoreMismatchError as StoreMismatchError,
)
from speechmapper_plugin.data.feature_store.index import StoreSummary as StoreSummary
from speechmapper_plugin.data.feature_store.index import merge_index as merge_index
from speechmapper_plugin.data.feature_store.index import read_metadata as read_metadata
from speechmapper_plugin.data.feature_store.metadata import (
    STORAGE_DTYPES as STORAGE_DTYPES,
)
from speechmapper_plugin.data.feature_store.metadata import (
    FeatureStoreMetadata as FeatureStoreMetadata,
)
from speechmapper_plugin.data.feature_store.metadata import (
    storage_dtype as storage_dtype,
)
from speechmapper_plugin.data.feature_store.reader import FeatureStore as FeatureStore
from speechmapper_plugin.data.feature_store.shards import ShardPlan as ShardPlan
from speechmapper_plugin.data.feature_store.shards import (
    finished_shard_record as finished_shard_record,
)
from speechmapper_plugin.data.feature_store.shards import plan_shards as plan_shards
from speechmapper_plugin.data.feature_store.shards import (
    shards_of_rank as shards_of_rank,
)
from speechmapper_plugin.data.feature_store.writer import ShardWriter as ShardWriter
from speechmapper_plugin.data.feature_store.writer import (
    create_or_check_store as create_or_check_store,
)
from speechmapper_plugin.data.feature_store.writer import (
    discard_unfinished as discard_unfinished,
)
