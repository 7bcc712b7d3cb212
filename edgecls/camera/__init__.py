"""The camera loop: frame sources and their URIs, the loop that classifies them, its outputs, overlay, web view and
statistics. Above the runtime: it drives a `Classifier` and knows nothing of training or datasets (a replayed test
set comes from its caller)."""
