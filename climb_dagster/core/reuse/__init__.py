"""Proxy evidence across re-clusterings: how old fine clusters map onto new super-clusters through the documents
both clusterings assign, and past runs re-expressed over the new super-clusters with a stated error.

May import: common, proxy (a run's Composition).
"""
