"""Builder of the demo corpus: real multi-domain English text from Debian packages, chunked into documents.

Run `python -m climb_dagster.demo.corpus --out climb_dagster/demo/data`.
"""
