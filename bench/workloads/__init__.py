"""One module per workload; each runs one system once and prints one JSON object (see ``bench/run.py``)."""
