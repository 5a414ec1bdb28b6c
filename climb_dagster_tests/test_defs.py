import subprocess
import sys

import dagster as dg

from climb_dagster_tests.paths import REPO_ROOT

# Round assets exist up to round 6 (the paper's 6:1 ablation); an experiment uses its first n_rounds.
ROUND_KS = range(1, 7)
ROUNDS = [f"round_{k}_{a}" for k in ROUND_KS for a in ("mixtures", "proxy_evaluations", "predictor")]
GROUPS = {
    "ingest": ["raw_documents"],
    "clustering": [
        "cluster_assignments",
        "cluster_centroids",
        "cluster_profiles",
        "cluster_quality",
        "document_embeddings",
        "document_quality",
        "pruned_clusters",
        "super_cluster_stats",
        "super_clusters",
    ],
    "proxy_data": ["cluster_tokens", "drop_tokens", "proxy_tokenizer"],
    "experiments": ["experiment", "frozen_block", "reused_evidence"],
    **{f"round_{k}": [a for a in ROUNDS if a.startswith(f"round_{k}_")] for k in ROUND_KS},
    "final": ["final_mixture", "mixture_export"],
}
JOBS = {
    "drop_clustering_job": GROUPS["ingest"]
    + ["cluster_assignments", "cluster_profiles", "document_embeddings", "document_quality"],
    "drop_embedding_job": GROUPS["ingest"] + ["document_embeddings", "document_quality"],
    "reassign_drop_job": ["cluster_assignments", "cluster_profiles"],
    "refit_centroids_job": ["cluster_centroids"],
    "merge_clusters_job": ["cluster_quality", "pruned_clusters", "super_cluster_stats", "super_clusters"],
    "proxy_tokenizer_job": ["proxy_tokenizer"],
    "drop_tokens_job": ["drop_tokens"],
    "proxy_data_job": ["cluster_tokens"],
    "climb_experiment_job": ["experiment", "frozen_block", "reused_evidence", *ROUNDS, *GROUPS["final"]],
}
# Jobs of ops that materialize no asset: deleting old <storage>/<run_id>/ folders.
OP_JOBS = {"storage_retention_job": ["delete_old_run_folders"]}
CHECKS = {
    ("raw_documents", "ingest_counts"),
    ("document_embeddings", "embeddings_finite"),
    ("final_mixture", "final_weights_sum_to_one"),
    ("reused_evidence", "evidence_kept"),
    *((f"round_{k}_proxy_evaluations", "no_failed_proxies") for k in ROUND_KS),
    ("cluster_assignments", "assignments_complete"),
    ("cluster_centroids", "centroids_are_finite"),
    ("pruned_clusters", "enough_documents_kept"),
    ("super_cluster_stats", "no_empty_super_cluster"),
    ("mixture_export", "mixture_meets_shares"),
    ("mixture_export", "no_heavy_repetition"),
    *((f"round_{k}_mixtures", name) for k in ROUND_KS for name in ("weights_valid", "budget_respected")),
    *((f"round_{k}_predictor", "evaluations_scores_finite") for k in ROUND_KS),
    *((f"round_{k}_predictor", "oof_spearman_positive") for k in ROUND_KS),
}


def test_definitions_load(climb_home):
    import climb_dagster.definitions as module

    defs = module.defs
    dg.Definitions.validate_loadable(defs)
    graph = defs.resolve_asset_graph()
    groups: dict[str, list[str]] = {}
    for key in graph.get_all_asset_keys():
        groups.setdefault(graph.get(key).group_name, []).append(key.to_user_string())
    assert {g: sorted(keys) for g, keys in groups.items()} == {g: sorted(keys) for g, keys in GROUPS.items()}
    # Asset jobs carry a selection; op jobs (retention) a graph of ops.
    asset_jobs = [job for job in defs.jobs if hasattr(job, "selection")]
    jobs = {job.name: sorted(k.to_user_string() for k in job.selection.resolve(graph)) for job in asset_jobs}
    assert jobs == {name: sorted(keys) for name, keys in JOBS.items()}
    op_jobs = {
        job.name: sorted(n.name for n in job.graph.nodes) for job in defs.jobs if job not in asset_jobs
    }
    assert op_jobs == OP_JOBS
    assert {(c.asset_key.to_user_string(), c.name) for c in graph.asset_check_keys} == CHECKS
    # Every check says in the UI what it verifies.
    undescribed = [
        key.to_user_string() for key in graph.asset_check_keys if not graph.get_check_spec(key).description
    ]
    assert undescribed == []
    assert sorted(s.name for s in defs.sensors) == [
        "drop_tokens_sensor",
        "merge_sensor",
        "new_drops_sensor",
        "proxy_data_sensor",
        "reassign_sensor",
    ]
    assert [(s.name, s.cron_schedule, s.job_name) for s in defs.schedules] == [
        ("recluster_schedule", "0 3 * * 0", "refit_centroids_job"),
        ("storage_retention_schedule", "30 4 * * *", "storage_retention_job"),
    ]
    # Rounds chain through the previous round's evaluations and predictor, after earlier experiments' evidence.
    parents = {p.to_user_string() for p in graph.get(dg.AssetKey("round_3_mixtures")).parent_keys}
    assert parents == {
        "experiment",
        "cluster_tokens",
        "super_cluster_stats",
        "round_1_proxy_evaluations",
        "round_2_proxy_evaluations",
        "round_2_predictor",
        "reused_evidence",
        "frozen_block",
    }
    # The final mixture reads every round's evaluations and the last round's predictor.
    parents = {p.to_user_string() for p in graph.get(dg.AssetKey("final_mixture")).parent_keys}
    assert parents == {
        "experiment",
        "cluster_tokens",
        "super_cluster_stats",
        "round_6_predictor",
        "reused_evidence",
        "frozen_block",
        *(f"round_{k}_proxy_evaluations" for k in ROUND_KS),
    }


def test_dagster_cli_validates(climb_home):
    result = subprocess.run(
        [sys.executable, "-m", "dagster", "definitions", "validate", "-m", "climb_dagster.definitions"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_definitions_import_is_light(climb_home):
    # Heavy libraries are imported lazily, so the code server starts fast.
    code = (
        "import sys, climb_dagster.definitions; "
        "heavy = [m for m in ('torch', 'faiss', 'transformers', 'lightgbm', 'sentence_transformers', 'lm_eval', 'fasttext') if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "", f"heavy modules imported at definitions load: {out.stdout}"
