"""River online models: bagged logistic regression, calibration, drift detection,
champion/challenger registry and prequential quality. Knows nothing of Kafka or bytewax."""
