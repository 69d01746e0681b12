"""The recorder: joins rooms as a hidden participant, composites, encodes and uploads recordings."""
