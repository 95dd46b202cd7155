"""Where scored events land: Arrow schemas, the Parquet writer, the DuckDB catalog over what it wrote."""
