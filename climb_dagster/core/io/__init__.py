"""Where data lives and how it is read and written: settings from the environment, one filesystem view for
local folders and s3:// (all-or-nothing writes, bounded folder copies), versioned publication, landing-zone
scans, crawl drops, the kept documents of a clustering, retention of run folders, redaction of credentials.

May import: common.
"""
