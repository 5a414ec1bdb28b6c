"""What the UI shows: clustering and search plots as PNG bytes, and small tables of polars frames.

May import: common. matplotlib and scipy load on first use.
"""
