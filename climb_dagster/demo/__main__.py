"""`make demo`: run the pipeline end to end on the embedded default (local folder, sqlite, local MLflow)."""

from climb_dagster.demo.run import main

raise SystemExit(main())
