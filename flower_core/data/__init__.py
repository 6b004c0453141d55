"""Photos in: dataset discovery and split, reading photos, tf.data pipelines, statistics,
previews, the synthetic set, and the audit and fixes of a dataset's labels."""
