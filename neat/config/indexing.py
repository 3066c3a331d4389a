"""The `indexing` section: where the markdown document index lives and how it reads, chunks
and searches (the `markdown` data source itself lives in `neat.indexing.source`)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, NonNegativeInt, PositiveInt, model_validator

from neat.config.base import ComponentConfig, PathStr, StrictModel

__all__ = [
    "DEFAULT_INDEX_DB",
    "DEFAULT_SKIP_DIRS",
    "ChunkingConfig",
    "CrossEncoderRerankConfig",
    "IndexingConfig",
    "NeatEmbedderConfig",
    "SearchMode",
    "SentenceTransformerEmbedderConfig",
]

SearchMode = Literal["bm25", "dense", "hybrid"]

DEFAULT_INDEX_DB = ".neat/index.db"
# Build output and tool folders skipped by default (hidden folders are skipped separately).
DEFAULT_SKIP_DIRS: tuple[str, ...] = (
    "node_modules",
    "target",
    "build",
    "dist",
    "site",
    "_build",
    "__pycache__",
    "venv",
    "env",
)


class ChunkingConfig(StrictModel):
    """Sections split at headings; a section longer than `max_chars` splits on paragraph
    boundaries, the next piece repeating up to `overlap_chars` of the previous one's end."""

    max_chars: PositiveInt = Field(default=2000, description="largest chunk, in characters")
    overlap_chars: NonNegativeInt = Field(
        default=200, description="text carried into the next piece of a split section"
    )

    @model_validator(mode="after")
    def _overlap_below_max(self) -> ChunkingConfig:
        if self.overlap_chars >= self.max_chars:
            raise ValueError(
                f"overlap_chars ({self.overlap_chars}) must be smaller than max_chars "
                f"({self.max_chars})"
            )
        return self


class SentenceTransformerEmbedderConfig(ComponentConfig):
    """A sentence-transformers model read from a local directory (`pip install neat[embeddings]`);
    never downloaded."""

    type: Literal["sentence_transformers"] = "sentence_transformers"
    path: PathStr
    batch_size: PositiveInt = 32
    device: str = "cpu"


class NeatEmbedderConfig(ComponentConfig):
    """A bi-encoder neat trained on the corpus (`neat index train-embedder --out DIR`)."""

    type: Literal["neat"] = "neat"
    path: PathStr
    batch_size: PositiveInt = 64
    device: str = "cpu"


class CrossEncoderRerankConfig(ComponentConfig):
    """A sentence-transformers cross-encoder read from a local folder, re-scoring the `top`
    candidates of a search (`pip install neat[embeddings]`); never downloaded."""

    type: Literal["cross_encoder"] = "cross_encoder"
    path: PathStr
    top: PositiveInt = Field(default=50, description="candidates re-scored per search")
    batch_size: PositiveInt = 32
    device: str = "cpu"


# told apart by `type` (each class's Literal); a ComponentConfig's `type` cannot be a
# pydantic discriminator, which refuses fields with before-validators
EmbedderConfig = SentenceTransformerEmbedderConfig | NeatEmbedderConfig


class IndexingConfig(StrictModel):
    """Where the index lives, which files it reads, how it chunks and searches."""

    db: PathStr = Field(
        default=DEFAULT_INDEX_DB, validate_default=True, description="the SQLite index file"
    )
    paths: list[PathStr] = Field(
        default_factory=list, description="folders or files `neat index build` reads by default"
    )
    include: list[str] = Field(
        default_factory=lambda: ["*.md", "*.markdown"], description="file name globs to index"
    )
    exclude: list[str] = Field(default_factory=list, description="globs (relative paths) to skip")
    skip_hidden: bool = Field(default=True, description="skip files and folders named .*")
    skip_dirs: list[str] = Field(
        default_factory=lambda: list(DEFAULT_SKIP_DIRS), description="folder names never entered"
    )
    chunking: ChunkingConfig = Field(default_factory=ChunkingConfig)
    embedder: EmbedderConfig | None = Field(
        default=None, description="set to enable dense and hybrid search"
    )
    mode: SearchMode | Literal["auto"] = Field(
        default="auto",
        description="default search mode; auto: hybrid when an embedder is set, else bm25 "
        "(measured: hybrid nDCG@10 0.730 vs bm25 0.673 vs dense 0.638 on the rust book)",
    )
    fusion: Literal["rrf", "convex"] = Field(
        default="rrf",
        description="how hybrid merges bm25 and dense: rrf (ranks only; measured +0.057 "
        "nDCG@10 with MiniLM on the rust book) or convex (normalised scores, dense_weight; "
        "never below bm25 with a weak embedder, where rrf lost up to 0.25)",
    )
    rrf_k: PositiveInt = Field(default=60, description="reciprocal rank fusion constant")
    dense_weight: float = Field(
        default=0.3, ge=0.0, le=1.0, description="convex fusion: the dense score's share"
    )
    rerank: CrossEncoderRerankConfig | None = Field(
        default=None, description="re-score the top candidates of every search with a cross-encoder"
    )
