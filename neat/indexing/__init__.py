"""The markdown document indexer (parse, chunk, store, search, incremental updates).

Its roles, `IDocumentIndexer` and `IEmbedder`, are defined in `neat.interfaces`; the
implementation arrives with the indexing issue.
"""
