"""Clustering stage: embed each drop, fit k-means on a sample across drops, assign, rate, prune, merge.

Per drop (crawl_drops): document_embeddings, document_quality, cluster_assignments, cluster_profiles.
A new drop needs only these four; the corpus-wide assets read the small per-drop profiles, never texts.
Corpus-wide: cluster_centroids, cluster_quality, pruned_clusters, super_clusters + super_cluster_stats.
"""

from climb_dagster.assets.clustering.assignments import assignments_complete, cluster_assignments
from climb_dagster.assets.clustering.centroids import centroids_are_finite, cluster_centroids
from climb_dagster.assets.clustering.embeddings import document_embeddings
from climb_dagster.assets.clustering.pruning import (
    cluster_profiles,
    cluster_quality,
    enough_documents_kept,
    pruned_clusters,
)
from climb_dagster.assets.clustering.quality import document_quality
from climb_dagster.assets.clustering.superclusters import no_empty_super_cluster, super_clusters

CLUSTERING_ASSETS = [
    document_embeddings,
    cluster_centroids,
    cluster_assignments,
    document_quality,
    cluster_profiles,
    cluster_quality,
    pruned_clusters,
    super_clusters,
]

CLUSTERING_CHECKS = [
    centroids_are_finite,
    assignments_complete,
    no_empty_super_cluster,
    enough_documents_kept,
]

# The corpus-wide assets that merge_clusters_job recomputes.
CORPUS_KEYS = ["cluster_quality", "pruned_clusters", "super_clusters", "super_cluster_stats"]
