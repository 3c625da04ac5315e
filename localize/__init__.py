"""vtr localize: moment localizers (MESM, similarity), post-processing and metrics."""
