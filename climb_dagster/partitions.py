"""Partition definitions: crawl drops arrive over time, experiments are created by users."""

import dagster as dg

crawl_drops = dg.DynamicPartitionsDefinition(name="crawl_drops")
experiments = dg.DynamicPartitionsDefinition(name="experiments")
