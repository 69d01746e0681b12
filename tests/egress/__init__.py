"""Tests of the recorder (egress/): its media core (compositor, mixer, writers, sinks)."""
