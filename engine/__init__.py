"""vtr engine: configuration, errors, decoding, encoders, feature store and ingest.

The bottom layer: it imports nothing from `index`, `localize` or `api`.
"""
