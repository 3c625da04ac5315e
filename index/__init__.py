"""vtr index: the SQL catalog, level embeddings, FAISS indexes and stage-1 search."""
