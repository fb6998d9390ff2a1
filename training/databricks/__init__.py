"""The large-data path: Databricks job definitions (job.json, ../../databricks.yml) and the
submission the timer uses to hand a tenant off to the Spark job."""
