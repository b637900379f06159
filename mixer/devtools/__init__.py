"""Developer tools that ship with mixer but are not part of the pipeline: the sample-corpus
generator behind `make sample` and the test fixtures (python -m mixer.devtools.sample_data)."""
