"""Encoding corpora larger than one process: sharded, resumable Parquet output (``encode_shards``)."""
