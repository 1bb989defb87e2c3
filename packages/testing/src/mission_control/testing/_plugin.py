"""The pytest plugin that ``mission-control-testing`` registers through ``pytest11``."""
