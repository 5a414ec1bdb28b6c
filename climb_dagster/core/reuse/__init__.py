"""Proxy evidence across re-clusterings: how old fine clusters map onto new super-clusters through the documents
both clusterings assign, past runs re-expressed over the new super-clusters with a stated error, and the
super-clusters an update left unchanged (freeze-and-expand's block).

May import: common, proxy (a run's Composition), search (the frozen block).
"""
