"""Models as trained artifacts: architectures, framing and colours, tf.data input, training, inference,
artifacts on disk, ModelVersion, devices and workers. May import config and catalog, never search."""
