"""Jobs, sensors and schedules, one module per stage."""
