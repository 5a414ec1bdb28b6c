"""Clustering: FAISS k-means fit on a sample and assignment in chunks, merging of surviving clusters into
super-clusters with their labels and profiles, and the whole stage in one process (benchmarks, tests).

May import: common, io, embedding (device sizing), quality.
"""
